"""Drawing detections on frames: boxes, labels and scores, one stable color per label."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import cv2
import numpy as np

from vidpipe.events import Detection


def label_color(label: str) -> tuple[int, int, int]:
    """A bright BGR color derived from the label's CRC32, stable across processes."""
    h = zlib.crc32(label.encode())
    hue = h % 180
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
    """Draw on a copy of ``image`` (uint8 ``[H, W, 3]`` BGR); boxes are xyxy pixels."""
    out = image.copy()
    thickness = max(1, round(min(out.shape[:2]) / 300))
    for det in detections:
        x1, y1, x2, y2 = (round(v) for v in det.box)
        color = label_color(det.label)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        text = f"{det.label} {det.score:.2f}"
        (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        top = max(0, y1 - th - baseline - 2)
        cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + baseline + 2), color, cv2.FILLED)
        cv2.putText(
            out,
            text,
            (x1 + 2, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return out
