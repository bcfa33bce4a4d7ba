"""Fixtures for the performance report job: one SparkSession, one fresh client's metrics.

The metrics live in a random 3-hour window between 2001 and 2019, so no other client's
documents fall into it and the job's window-wide replace touches only this client's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from pymongo import MongoClient
from pyspark.sql import SparkSession

from services.reports.report import build_session
from services.reports.settings import ReportSettings
from vidpipe.metricsstore import COLLECTION

NS_PER_MS = 1_000_000
LABELS = ("person", "car", "bicycle")


@dataclass(frozen=True)
class MetricsWindow:
    """A fresh client's documents: ``valid`` ones, ``malformed`` ones, and ``outside`` ones
    just outside ``[start, end)``; ``start``/``end`` are whole UTC hours."""

    client_id: str
    start: datetime
    end: datetime
    valid: list[dict[str, Any]]
    malformed: list[dict[str, Any]]
    outside: list[dict[str, Any]]


@pytest.fixture(scope="module")
def evaluator_settings() -> ReportSettings:
    return ReportSettings()


@pytest.fixture(scope="module")
def spark(stack: None, evaluator_settings: ReportSettings) -> Iterator[SparkSession]:
    """One local[2] session for the module: the JVM takes seconds to start."""
    session = build_session(evaluator_settings)
    yield session
    session.stop()


def _frame_docs(
    rng: np.random.Generator, client: str, camera: str, hour: datetime, frames: int, seq0: int
) -> list[dict[str, Any]]:
    """Frames at random instants in the hour with random hop latencies; 10 % dropped,
    5 % not rendered yet; in the second hour camera cam-a switches to model version 2."""
    hour_ns = int(hour.timestamp()) * 1_000_000_000
    offsets = np.sort(rng.integers(0, 3600 * 1_000_000_000, size=frames))
    docs = []
    for i, offset in enumerate(offsets):
        capture = hour_ns + int(offset)
        doc: dict[str, Any] = {
            "_id": f"{client}/{camera}/{seq0 + i}",
            "client_id": client,
            "camera_id": camera,
            "frame_seq": seq0 + i,
            "capture_ts_ns": capture,
            "decoded_ts_ns": capture + int(rng.lognormal(3.0, 0.6) * NS_PER_MS),
        }
        if rng.random() < 0.10:
            doc |= {"dropped": True, "drop_reason": "frame age over budget"}
            docs.append(doc)
            continue
        counts = {label: int(n) for label in LABELS if (n := rng.poisson(1.5))}
        switched = camera == "cam-a" and hour.hour % 3 == 1 and i >= frames // 2
        doc |= {
            "detected_ts_ns": doc["decoded_ts_ns"] + int(rng.uniform(50, 2000) * NS_PER_MS),
            "model_name": "coco-centernet",
            "model_version": "2" if switched else "1",
            "batch_size": 8,
            "inference_ms": 120.5,
            "detections_by_label": counts,
            "dropped": False,
        }
        if counts:
            doc["mean_score"] = round(float(rng.uniform(0.3, 0.9)), 4)
            doc["max_score"] = 0.95
        if rng.random() >= 0.05:
            doc["rendered_ts_ns"] = doc["detected_ts_ns"] + int(rng.uniform(5, 300) * NS_PER_MS)
        docs.append(doc)
    return docs


def _malformed(client: str, start_ns: int) -> list[dict[str, Any]]:
    base = {"client_id": client, "camera_id": "cam-a", "frame_seq": 0, "dropped": False}
    return [
        base
        | {"_id": f"{client}/cam-a/900001", "capture_ts_ns": start_ns + 5, "decoded_ts_ns": "soon"},
        base | {"_id": f"{client}/cam-a/900002", "capture_ts_ns": float(start_ns + 2**40)},
        base
        | {
            "_id": f"{client}/cam-b/900003",
            "capture_ts_ns": start_ns + 7,
            "detections_by_label": ["person"],
        },
        {"_id": f"{client}/cam-b/900004", "capture_ts_ns": start_ns + 9, "camera_id": "cam-b"},
    ]


@pytest.fixture(scope="module")
def metrics_window(stack: None, evaluator_settings: ReportSettings) -> Iterator[MetricsWindow]:
    """~330 documents of a fresh client over 3 hours; removed from Mongo and Postgres after."""
    rng = np.random.default_rng(20261122)
    client = f"it-eval-{uuid.uuid4().hex[:8]}"
    start = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(hours=int(rng.integers(0, 160_000)))
    start = start.replace(hour=start.hour - start.hour % 3)  # so hour % 3 == 1 is the 2nd hour
    valid: list[dict[str, Any]] = []
    for h in range(3):
        for camera, frames in (("cam-a", 60), ("cam-b", 50)):
            seq0 = 1000 * h
            valid += _frame_docs(rng, client, camera, start + timedelta(hours=h), frames, seq0)
    start_ns = int(start.timestamp()) * 1_000_000_000
    end_ns = start_ns + 3 * 3600 * 1_000_000_000
    outside = [
        {"_id": f"{client}/cam-a/before", "client_id": client, "camera_id": "cam-a",
         "capture_ts_ns": start_ns - 1},
        {"_id": f"{client}/cam-a/after", "client_id": client, "camera_id": "cam-a",
         "capture_ts_ns": end_ns},
    ]  # fmt: skip
    malformed = _malformed(client, start_ns)
    mongo: MongoClient[dict[str, Any]] = MongoClient(evaluator_settings.mongo.url)
    collection = mongo[evaluator_settings.mongo.database][COLLECTION]
    collection.insert_many(valid + malformed + outside)
    ids = [doc["_id"] for doc in valid + malformed + outside]
    try:
        yield MetricsWindow(client, start, start + timedelta(hours=3), valid, malformed, outside)
    finally:
        collection.delete_many({"_id": {"$in": ids}})
        mongo.close()
        with psycopg.connect(evaluator_settings.postgres.dsn.get_secret_value()) as conn:
            conn.execute("DELETE FROM performance_reports WHERE client_id = %s", (client,))
