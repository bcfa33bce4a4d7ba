"""Per-frame metrics documents in MongoDB collection ``frame_metrics``.

One document per frame, ``_id`` = frame_id (``client/camera/seq``); each stage's
:class:`~vidpipe.events.FrameMetrics` is merged into it with ``$set`` (upsert), so replays
overwrite and stages can arrive in any order. Writes are batched through ``bulk_write``.
Only operations that real MongoDB performs identically are used (the local stand-in is a
partial wire-protocol server).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, MongoClient, UpdateOne

from vidpipe.events import FrameMetrics
from vidpipe.settings import MongoSettings

COLLECTION = "frame_metrics"


def metrics_document(metrics: FrameMetrics) -> dict[str, Any]:
    """Fields a stage knows (``None`` omitted), flattened for querying."""
    doc = metrics.model_dump(exclude_none=True, exclude={"schema_version", "stage", "model"})
    if metrics.model is not None:
        doc["model_name"] = metrics.model.name
        doc["model_version"] = metrics.model.version
    if metrics.stage == "renderer":
        # The detector owns detection facts; a render must not blank them out.
        doc.pop("detections_by_label", None)
        doc.pop("dropped", None)
    return doc


class MetricsStore:
    def __init__(self, settings: MongoSettings) -> None:
        self._client: MongoClient[dict[str, Any]] = MongoClient(
            settings.url, serverSelectionTimeoutMS=5000
        )
        self._collection = self._client[settings.database][COLLECTION]

    def ensure_indexes(self) -> None:
        """Indexes for the report queries: time windows per client/camera."""
        self._collection.create_index([("capture_ts_ns", ASCENDING)])
        self._collection.create_index(
            [("client_id", ASCENDING), ("camera_id", ASCENDING), ("capture_ts_ns", ASCENDING)]
        )

    def upsert_many(self, batch: Sequence[FrameMetrics]) -> None:
        if not batch:
            return
        ops = [
            UpdateOne({"_id": m.frame_id}, {"$set": metrics_document(m)}, upsert=True)
            for m in batch
        ]
        self._collection.bulk_write(ops, ordered=True)

    def find(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self._collection.find(query))

    def count(self, query: dict[str, Any]) -> int:
        """Documents matching ``query`` (ids only; no aggregation, which the stand-in lacks)."""
        return sum(1 for _ in self._collection.find(query, projection={"_id": 1}))

    def close(self) -> None:
        self._client.close()
