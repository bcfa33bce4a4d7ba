"""Helpers used to hand-label ``datasets/vtest-persons`` (see its README.md).

The labeller looks at the PNGs this writes; nothing here decides a box on its own.

    python tools/label_tool.py propose --video var/assets/vtest.avi --out var/label/proposals.json
    python tools/label_tool.py draw --video var/assets/vtest.avi --boxes B.json --frame 88 \
        [--crop X1 Y1 X2 Y2] [--scale 5] --out var/label/f88.png
    python tools/label_tool.py sheet --video var/assets/vtest.avi --boxes B.json --out var/label/all

``B.json`` maps a frame index (string) to boxes ``[x1, y1, x2, y2]`` (pixels, xyxy, x2/y2
exclusive edges) or ``[x1, y1, x2, y2, 1]`` for an ignore region (COCO ``iscrowd: 1``).
Proposals: the camera is fixed, so moving people differ from the per-pixel median of the video
(every 4th frame); the difference is thresholded, cleaned with morphology and split into
connected components. Groups come out merged, shadows and carried objects attached, standing
people faint: every proposal is only a starting point.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

FRAMES = [10 + 26 * k for k in range(31)]  # 10, 36, .., 790: spread over the 795 frames
DIFF_THRESHOLD = 35  # max |frame - background| over BGR channels, 0..255
MIN_AREA, MIN_HEIGHT = 60, 10  # px


def read_video(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return np.stack(frames)


def propose(video: np.ndarray, indices: list[int]) -> dict[str, list[list[int]]]:
    background = np.median(video[::4], axis=0).astype(np.uint8)
    proposals: dict[str, list[list[int]]] = {}
    for index in indices:
        moving = (cv2.absdiff(video[index], background).max(axis=2) > DIFF_THRESHOLD).astype(
            np.uint8
        )
        moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        moving = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, np.ones((9, 5), np.uint8))
        _, _, stats, _ = cv2.connectedComponentsWithStats(moving)
        proposals[str(index)] = [
            [int(x), int(y), int(x + w), int(y + h)]
            for x, y, w, h, area in stats[1:]
            if area >= MIN_AREA and h >= MIN_HEIGHT
        ]
    return proposals


def draw(
    frame: np.ndarray, boxes: list[list[int]], crop: tuple[int, int, int, int], scale: float
) -> np.ndarray:
    """``crop`` of ``frame`` magnified ``scale`` times, with a labelled pixel grid (every 10 px
    when magnified, 50 px otherwise) and numbered boxes (red; ignore regions orange)."""
    x1, y1, x2, y2 = crop
    image = cv2.resize(frame[y1:y2, x1:x2], None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    step = 10 if scale > 1.5 else 50
    for value in range(0, max(x2, y2), step):
        for vertical in (True, False):
            lo = x1 if vertical else y1
            hi = x2 if vertical else y2
            if not lo <= value < hi:
                continue
            at = int((value - lo) * scale)
            a, b = ((at, 0), (at, image.shape[0])) if vertical else ((0, at), (image.shape[1], at))
            cv2.line(image, a, b, (255, 255, 255) if value % 50 == 0 else (170, 170, 170), 1)
            text_at = (at + 2, 12) if vertical else (2, at - 2)
            cv2.putText(image, str(value), text_at, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 2)
            cv2.putText(
                image, str(value), text_at, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1
            )
    for n, box in enumerate(boxes):
        colour = (0, 165, 255) if len(box) == 5 else (0, 0, 255)
        p1 = (int((box[0] - x1) * scale), int((box[1] - y1) * scale))
        p2 = (int((box[2] - x1) * scale), int((box[3] - y1) * scale))
        cv2.rectangle(image, p1, p2, colour, 1)
        cv2.putText(image, str(n), (p1[0], p1[1] - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
    return image


def sheet(
    video: np.ndarray, boxes: dict[str, list[list[int]]], width: int = 1500
) -> list[np.ndarray]:
    """Every box cropped with a 6 px margin at 2.5x and captioned ``frame:n``, tiled into
    pages, for checking each final box by eye."""
    tiles = []
    for key in sorted(boxes, key=int):
        for n, box in enumerate(boxes[key]):
            x1, y1 = max(0, box[0] - 6), max(0, box[1] - 6)
            x2, y2 = min(video.shape[2], box[2] + 6), min(video.shape[1], box[3] + 6)
            tile = draw(video[int(key)], [box], (x1, y1, x2, y2), 2.5)
            caption = np.zeros((14, max(tile.shape[1], 60), 3), np.uint8)
            cv2.putText(
                caption, f"{key}:{n}", (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255,) * 3, 1
            )
            padded = np.zeros((tile.shape[0], caption.shape[1], 3), np.uint8)
            padded[:, : tile.shape[1]] = tile
            tiles.append(np.vstack([caption, padded]))
    rows: list[list[np.ndarray]] = [[]]
    for tile in tiles:
        if rows[-1] and sum(t.shape[1] + 3 for t in rows[-1]) + tile.shape[1] > width:
            rows.append([])
        rows[-1].append(tile)
    lines = []
    for row in rows:
        line = np.full((max(t.shape[0] for t in row) + 3, width, 3), 40, np.uint8)
        x = 0
        for tile in row:
            line[: tile.shape[0], x : x + tile.shape[1]] = tile
            x += tile.shape[1] + 3
        lines.append(line)
    return [np.vstack(lines[i : i + 4]) for i in range(0, len(lines), 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["propose", "draw", "sheet"])
    parser.add_argument("--video", type=Path, default=Path("var/assets/vtest.avi"))
    parser.add_argument("--boxes", type=Path)
    parser.add_argument("--frame", type=int)
    parser.add_argument("--crop", type=int, nargs=4)
    parser.add_argument("--scale", type=float, default=1.5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    video = read_video(args.video)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.command == "propose":
        args.out.write_text(json.dumps(propose(video, FRAMES), indent=0))
        return
    boxes = json.loads(args.boxes.read_text())
    if args.command == "draw":
        crop = tuple(args.crop) if args.crop else (0, 0, video.shape[2], video.shape[1])
        image = draw(video[args.frame], boxes.get(str(args.frame), []), crop, args.scale)
        cv2.imwrite(str(args.out), image)
        return
    for page, image in enumerate(sheet(video, boxes)):
        cv2.imwrite(f"{args.out}_{page}.png", image)


if __name__ == "__main__":
    main()
