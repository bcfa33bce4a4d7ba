"""Per-frame metrics documents in MongoDB collection ``frame_metrics``.

One document per frame, ``_id`` = frame_id (``client/camera/session/seq``); writers merge fields
into it with ``$set`` (upsert), so replays overwrite and stages can arrive in any order
(what each stage contributes is the metrics sink's rule). Writes are batched through
``bulk_write``. Only operations that real MongoDB performs identically are used (the local
stand-in is a partial wire-protocol server).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, MongoClient
from pymongo.errors import DuplicateKeyError

from vidpipe.settings import MongoSettings

COLLECTION = "frame_metrics"


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

    def merge_many(self, fields_by_id: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """``$set`` each ``(frame_id, fields)`` into its document, created if absent, in order.

        Update, then insert when nothing matched (and update again if a concurrent writer
        inserted it first): the effect of an upsert, in operations the local stand-in serves
        in constant time (its upsert of a new document scans the collection)."""
        for doc_id, fields in fields_by_id:
            if self._collection.update_one({"_id": doc_id}, {"$set": fields}).matched_count:
                continue
            try:
                self._collection.insert_one({"_id": doc_id, **fields})
            except DuplicateKeyError:
                self._collection.update_one({"_id": doc_id}, {"$set": fields})

    def find(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self._collection.find(query))

    def count(self, query: dict[str, Any]) -> int:
        """Documents matching ``query`` (ids only; no aggregation, which the stand-in lacks)."""
        return sum(1 for _ in self._collection.find(query, projection={"_id": 1}))

    def delete_captured_before(self, client_id: str, before_ns: int) -> int:
        """Delete the client's documents with ``capture_ts_ns`` < ``before_ns`` (ns since the
        epoch); returns how many were deleted. Documents without a capture time stay."""
        result = self._collection.delete_many(
            {"client_id": client_id, "capture_ts_ns": {"$lt": before_ns}}
        )
        return int(result.deleted_count)

    def count_captured_before(self, client_id: str, before_ns: int) -> int:
        """How many documents :meth:`delete_captured_before` would delete."""
        return self.count({"client_id": client_id, "capture_ts_ns": {"$lt": before_ns}})

    def close(self) -> None:
        self._client.close()
