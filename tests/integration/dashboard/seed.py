"""What the pipeline and the evaluator leave behind, written directly for dashboard tests:
frames, annotations and renders in S3, clips, and performance_reports rows."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from tests.integration.dashboard.conftest import resources
from vidpipe.db import performance_reports
from vidpipe.objectstore import ObjectStore
from vidpipe.topics import ANNOTATIONS_BUCKET, RENDERS_BUCKET

#: The stream session seeded frames and clips belong to.
SESSION = "20261201t120000-0a0a"


def seed_frame(
    store: ObjectStore,
    client_id: str,
    camera_id: str,
    seq: int,
    rendered: bool = True,
    image: Any = None,
    session: str = SESSION,
) -> None:
    """What decoder, detector and renderer leave in S3 for one frame: one person detected.

    ``image`` (BGR array) defaults to a small grey frame; the render draws the box on it.
    """
    import json
    import time

    import cv2
    import numpy as np

    from services.renderer.draw import draw_detections
    from vidpipe.events import Detection

    if image is None:
        image = np.full((180, 320, 3), 60 + seq % 100, dtype=np.uint8)
    height, width = image.shape[:2]
    person = Detection(
        box=(width * 0.1, height * 0.05, width * 0.7, height * 0.98), score=0.87, label="person"
    )
    prefix = f"{client_id}/{camera_id}/{session}/{seq}"
    store.put("frames", f"{prefix}.jpg", bytes(cv2.imencode(".jpg", image)[1]), "image/jpeg")
    doc = {
        "frame_id": prefix,
        "client_id": client_id,
        "camera_id": camera_id,
        "session_id": session,
        "frame_seq": seq,
        "image": {"bucket": "frames", "key": f"{prefix}.jpg"},
        "width": width,
        "height": height,
        "capture_ts_ns": time.time_ns(),
        "model": {"name": "coco-centernet", "version": "1"},
        "detections": [person.model_dump()],
    }
    store.put(ANNOTATIONS_BUCKET, f"{prefix}.json", json.dumps(doc).encode(), "application/json")
    if rendered:
        drawn = draw_detections(image.copy(), [person])
        store.put(
            RENDERS_BUCKET, f"{prefix}.jpg", bytes(cv2.imencode(".jpg", drawn)[1]), "image/jpeg"
        )


def seed_clip(
    store: ObjectStore,
    client_id: str,
    camera_id: str,
    segment: int,
    frames: int = 0,
    image: Any = None,
    session: str = SESSION,
) -> None:
    """A clip object; with ``frames`` > 0 a real H.264 MP4 of ``image`` (BGR) panning."""
    key = f"{client_id}/{camera_id}/{session}/clips/{segment:06d}.mp4"
    data = b"\x00\x00\x00\x18ftypmp42"
    if frames:
        import cv2
        import numpy as np

        from services.renderer.clips import encode_clip

        base = np.full((180, 320, 3), 120, dtype=np.uint8) if image is None else image
        shots = [np.roll(base, 8 * i, axis=1) for i in range(frames)]
        data = encode_clip([bytes(cv2.imencode(".jpg", shot)[1]) for shot in shots], fps=5)
    store.put(RENDERS_BUCKET, key, data, "video/mp4")


def seed_report(app: FastAPI, client_id: str, camera_id: str, hours: int = 6) -> None:
    """``hours`` rows of performance_reports ending at the current hour."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = [
        {
            "client_id": client_id,
            "camera_id": camera_id,
            "model_name": "coco-centernet",
            "model_version": "1",
            "hour": now - timedelta(hours=hours - 1 - i),
            "frames": 36000,
            "dropped": i * 10,
            "effective_fps": 9.5 + i * 0.1,
            **{
                f"{hop}_{q}_ms": base * (1 + i * 0.05) * mult
                for hop, base in (("decoded", 8.0), ("detected", 60.0), ("rendered", 95.0))
                for q, mult in (("p50", 1.0), ("p95", 1.6), ("p99", 2.2))
            },
            "mean_score": 0.61,
            "detections_by_label": {"person": 4000 + 100 * i, "car": 300 + 20 * i},
        }
        for i in range(hours)
    ]
    with resources(app).engine.begin() as conn:
        conn.execute(sa.insert(performance_reports), rows)


def astronaut_bgr() -> Any:
    """A real photograph (BGR) with one person the COCO detector finds."""
    import cv2
    from skimage.data import astronaut

    return cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
