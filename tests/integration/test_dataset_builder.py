"""Pseudo-labelled dataset from a camera's stored detections, against the real S3.

A fresh uuid client/camera gets 3 annotation JSONs and frame JPEGs; the built dataset is
read back with :func:`load_dataset`. Every object written is deleted afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from vidpipe.dataset_builder import DatasetExists, build_from_camera
from vidpipe.datasets import InvalidDataset, load_dataset
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings
from vidpipe.topics import ANNOTATIONS_BUCKET, DATASETS_BUCKET, FRAMES_BUCKET

pytestmark = pytest.mark.integration
T0 = 1_600_000_000_000_000_000  # ns since epoch
SESSION = "20261201t120000-0a0a"
DETECTIONS = [
    [{"box": [10.0, 20.0, 50.0, 80.0], "score": 0.9, "label": "person"},
     {"box": [60.0, 5.0, 100.0, 25.0], "score": 0.3, "label": "car"}],
    [{"box": [0.0, 0.0, 30.0, 30.0], "score": 0.6, "label": "car"}],
    [],
]  # fmt: skip


@pytest.fixture
def camera(stack: None, stack_settings: ServiceSettings) -> Iterator[tuple[ObjectStore, str]]:
    store = ObjectStore(stack_settings.s3)
    client, camera_id = f"it-ds-{uuid.uuid4().hex[:8]}", "cam-1"
    prefix = f"{client}/{camera_id}/{SESSION}/"
    for seq, dets in enumerate(DETECTIONS):
        image = np.full((96, 128, 3), 40 * seq, dtype=np.uint8)
        ok, jpeg = cv2.imencode(".jpg", image)
        assert ok
        store.put(FRAMES_BUCKET, f"{prefix}{seq}.jpg", jpeg.tobytes(), "image/jpeg")
        doc = {
            "frame_id": f"{prefix}{seq}",
            "client_id": client,
            "camera_id": camera_id,
            "session_id": SESSION,
            "frame_seq": seq,
            "image": {"bucket": FRAMES_BUCKET, "key": f"{prefix}{seq}.jpg"},
            "width": 128,
            "height": 96,
            "capture_ts_ns": T0 + seq * 100_000_000,
            "model": {"name": "coco-centernet", "version": "1"},
            "detections": dets,
        }
        store.put(ANNOTATIONS_BUCKET, f"{prefix}{seq}.json", json.dumps(doc).encode(), "")
    try:
        yield store, client
    finally:
        store.delete_prefix(ANNOTATIONS_BUCKET, f"{client}/")
        store.delete_prefix(FRAMES_BUCKET, f"{client}/")
        store.delete_prefix(DATASETS_BUCKET, f"{client}/")


def test_build_from_camera_round_trip(camera: tuple[ObjectStore, str]) -> None:
    store, client = camera
    name = f"{client}/built"  # under the throwaway client, removed by the fixture
    summary = build_from_camera(store, client, "cam-1", name, T0, min_score=0.4)
    assert (summary.images, summary.negatives) == (3, 1)
    assert summary.boxes_by_label == {"car": 1, "person": 1}

    ds = load_dataset(store, name)
    assert [i["file_name"] for i in ds.images] == [f"{SESSION}-{n}.jpg" for n in (0, 1, 2)]
    categories = {c["id"]: c["name"] for c in ds.categories}
    assert categories == {1: "car", 2: "person"}
    boxes = sorted((categories[a["category_id"]], a["bbox"]) for a in ds.annotations)
    assert boxes == [("car", [0.0, 0.0, 30.0, 30.0]), ("person", [10.0, 20.0, 40.0, 60.0])]
    decoded = cv2.imdecode(np.frombuffer(ds.image_bytes(ds.images[1]), np.uint8), 1)
    assert decoded is not None and decoded.shape == (96, 128, 3)
    assert ds.coco["info"]["teachers"] == ["coco-centernet@1"]

    with pytest.raises(DatasetExists):
        build_from_camera(store, client, "cam-1", name, T0, min_score=0.4)
    late = build_from_camera(store, client, "cam-1", name, T0 + 150_000_000, 0.4, overwrite=True)
    assert (late.images, late.negatives) == (1, 1)
    with pytest.raises(InvalidDataset, match="cam-1"):
        build_from_camera(store, client, "cam-1", name, T0 + 10**12, 0.4, overwrite=True)
