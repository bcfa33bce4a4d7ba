"""Synthetic COCO scenes with exact boxes, for the metric and dataset tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.unit.fakes import MemoryDatasetStore

PERSON, CAR = 1, 3


class MemoryStore(MemoryDatasetStore):
    """The in-memory dataset store, counting puts (re-uploads show up)."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        super().put(bucket, key, data, content_type)
        self.puts += 1


Box = tuple[int, list[float]]


def scene(boxes: Sequence[Box], crowd: Sequence[Box] = ()) -> dict[str, Any]:
    """One 200x100 image; ``boxes``/``crowd``: (category id, xywh) ground truth."""
    annotations = [
        {"id": i, "image_id": 1, "category_id": c, "bbox": b, "iscrowd": 0}
        for i, (c, b) in enumerate(boxes, start=1)
    ]
    annotations += [
        {"id": 100 + i, "image_id": 1, "category_id": c, "bbox": b, "iscrowd": 1}
        for i, (c, b) in enumerate(crowd)
    ]
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}],
        "annotations": annotations,
        "categories": [{"id": PERSON, "name": "person"}, {"id": CAR, "name": "car"}],
    }


def det(bbox: list[float], score: float, category: int = PERSON) -> dict[str, Any]:
    return {"image_id": 1, "category_id": category, "bbox": bbox, "score": score}
