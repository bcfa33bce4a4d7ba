"""A window of MongoDB ``frame_metrics`` read into Spark in parallel capture-time slices.

The MongoDB Spark connector is not available offline, so the job reads with pymongo inside the
executors: the window ``[start, end)`` is cut into contiguous slices of capture time, the slices
are spread over Spark partitions, and each partition opens its own ``MongoClient`` and runs one
range query per slice on ``capture_ts_ns`` (indexed by the metrics sink), with a projection of
only the fields the report needs. Only ``find`` is used, which the local stand-in serves.

Every document is validated (:func:`parse_metrics_document`); a malformed one is skipped and
counted with a Spark accumulator instead of failing the job. A document whose
``capture_ts_ns`` is missing or not a number has no place in time: MongoDB's numeric range
query never returns it (type bracketing), so it cannot be attributed to any window and is not
counted; a float ``capture_ts_ns`` is returned by the query and counted as malformed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeGuard

from pymongo import MongoClient
from pyspark import Accumulator, AccumulatorParam
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
)

from vidpipe.metricsstore import COLLECTION
from vidpipe.settings import MongoSettings

NS_PER_SECOND = 1_000_000_000
SECONDS_PER_HOUR = 3600
NS_PER_HOUR = SECONDS_PER_HOUR * NS_PER_SECOND
MAX_SKIP_EXAMPLES = 10

#: One validated frame, in the order :func:`parse_metrics_document` returns its fields.
METRICS_SCHEMA = StructType(
    [
        StructField("client_id", StringType(), nullable=False),
        StructField("camera_id", StringType(), nullable=False),
        StructField("model_name", StringType(), nullable=False),  # '' when no model ran
        StructField("model_version", StringType(), nullable=False),
        StructField("hour_s", LongType(), nullable=False),  # UTC hour start, s since epoch
        StructField("capture_ts_ns", LongType(), nullable=False),
        StructField("decoded_ts_ns", LongType(), nullable=True),
        StructField("detected_ts_ns", LongType(), nullable=True),
        StructField("rendered_ts_ns", LongType(), nullable=True),
        StructField("dropped", BooleanType(), nullable=False),
        StructField("mean_score", DoubleType(), nullable=True),
        StructField("n_detections", LongType(), nullable=False),
        StructField("detections_by_label", MapType(StringType(), LongType(), False), False),
    ]
)
_DERIVED = {"hour_s", "n_detections"}
_PROJECTION = {name: 1 for name in METRICS_SCHEMA.fieldNames() if name not in _DERIVED}


@dataclass(frozen=True)
class ReportWindow:
    """Capture-time window ``[start, end)``, UTC, both on whole hours."""

    start: datetime
    end: datetime

    @property
    def start_ns(self) -> int:
        return int(self.start.timestamp()) * NS_PER_SECOND

    @property
    def end_ns(self) -> int:
        return int(self.end.timestamp()) * NS_PER_SECOND


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def hour_floor(moment: datetime) -> datetime:
    """Start of the UTC hour containing ``moment`` (naive datetimes are taken as UTC)."""
    return _utc(moment).replace(minute=0, second=0, microsecond=0)


def hour_bucket_s(capture_ts_ns: int) -> int:
    """Start of the UTC hour of a capture timestamp (ns since epoch), in s since epoch."""
    return capture_ts_ns // NS_PER_HOUR * SECONDS_PER_HOUR


def resolve_window(
    since: datetime | None, until: datetime | None, now: datetime, default_hours: int
) -> ReportWindow:
    """The report window, widened to whole UTC hours so every hour row covers all its frames.

    Defaults: ``until`` = ``now``, ``since`` = ``until - default_hours``. Naive datetimes are
    UTC. ``start`` = hour floor of ``since``; ``end`` = hour ceiling of ``until``.

    Raises:
        ValueError: ``since`` is not before ``until``.
    """
    until = _utc(until or now)
    since = _utc(since) if since is not None else until - timedelta(hours=default_hours)
    if since >= until:
        raise ValueError(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
    start, end = hour_floor(since), hour_floor(until)
    if end < until:
        end += timedelta(hours=1)
    return ReportWindow(start, end)


def time_slices(start_ns: int, end_ns: int, slice_ns: int) -> list[tuple[int, int]]:
    """Contiguous ``[a, b)`` slices covering ``[start_ns, end_ns)``; the last may be shorter.

    Raises:
        ValueError: ``slice_ns`` is not positive.
    """
    if slice_ns <= 0:
        raise ValueError(f"slice length must be positive, got {slice_ns} ns")
    return [(a, min(a + slice_ns, end_ns)) for a in range(start_ns, end_ns, slice_ns)]


class MalformedDocument(ValueError):
    """A ``frame_metrics`` document that does not match the metrics contract."""


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(doc: Mapping[str, Any], field: str, *, required: bool) -> str:
    value = doc.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise MalformedDocument(f"{field} must be a non-empty string, got {value!r}")
    return value


def _ns(doc: Mapping[str, Any], field: str, *, required: bool) -> int | None:
    value = doc.get(field)
    if value is None and not required:
        return None
    if not _is_int(value) or value <= 0:
        raise MalformedDocument(f"{field} must be a positive integer (ns), got {value!r}")
    return int(value)


def _labels(doc: Mapping[str, Any]) -> dict[str, int]:
    value = doc.get("detections_by_label")
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and _is_int(n) and n >= 0 for k, n in value.items()
    ):
        raise MalformedDocument(f"detections_by_label must map label -> count, got {value!r}")
    return {k: int(n) for k, n in value.items()}


def parse_metrics_document(doc: Mapping[str, Any]) -> tuple[Any, ...]:
    """A ``frame_metrics`` document as a row of :data:`METRICS_SCHEMA`.

    Missing model fields become ``''`` (frames dropped before detection have no model);
    ``dropped`` defaults to False, ``detections_by_label`` to ``{}``.

    Raises:
        MalformedDocument: a field is missing or has the wrong type (message names it).
    """
    capture_ts_ns = _ns(doc, "capture_ts_ns", required=True)
    assert capture_ts_ns is not None  # required=True never returns None
    dropped = doc.get("dropped", False)
    if not isinstance(dropped, bool):
        raise MalformedDocument(f"dropped must be a boolean, got {dropped!r}")
    score = doc.get("mean_score")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)
    ):
        raise MalformedDocument(f"mean_score must be a finite number, got {score!r}")
    labels = _labels(doc)
    return (
        _text(doc, "client_id", required=True),
        _text(doc, "camera_id", required=True),
        _text(doc, "model_name", required=False),
        _text(doc, "model_version", required=False),
        hour_bucket_s(capture_ts_ns),
        capture_ts_ns,
        _ns(doc, "decoded_ts_ns", required=False),
        _ns(doc, "detected_ts_ns", required=False),
        _ns(doc, "rendered_ts_ns", required=False),
        dropped,
        None if score is None else float(score),
        sum(labels.values()),
        labels,
    )


class _ExamplesParam(AccumulatorParam[list[str]]):
    """Accumulates at most :data:`MAX_SKIP_EXAMPLES` ``"_id: reason"`` strings."""

    def zero(self, value: list[str]) -> list[str]:
        return []

    def addInPlace(self, value1: list[str], value2: list[str]) -> list[str]:
        return (value1 + value2)[:MAX_SKIP_EXAMPLES]


@dataclass(frozen=True)
class SkipCounter:
    """Driver-side view of the accumulators; read only after an action has run."""

    count: Accumulator[int]
    examples: Accumulator[list[str]]


def _read_partition(
    slices: Iterable[tuple[int, int]], *, url: str, database: str, skipped: SkipCounter
) -> Iterator[tuple[Any, ...]]:
    """Executor side: one MongoClient per partition, one range query per slice."""
    client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=10_000)
    try:
        collection = client[database][COLLECTION]
        for start_ns, end_ns in slices:
            query = {"capture_ts_ns": {"$gte": start_ns, "$lt": end_ns}}
            for doc in collection.find(query, _PROJECTION, batch_size=2000):
                try:
                    yield parse_metrics_document(doc)
                except MalformedDocument as exc:
                    skipped.count.add(1)
                    skipped.examples.add([f"{doc.get('_id')!r}: {exc}"])
    finally:
        client.close()


def read_metrics(
    spark: SparkSession,
    mongo: MongoSettings,
    window: ReportWindow,
    slice_minutes: int,
    partitions: int,
) -> tuple[DataFrame, SkipCounter]:
    """A lazy DataFrame of :data:`METRICS_SCHEMA` rows for the window, and its skip counter.

    The read runs when an action runs; Spark accumulators updated in transformations are
    at-least-once, so cache the DataFrame and read the counter after its first action.
    """
    context = spark.sparkContext
    skipped = SkipCounter(context.accumulator(0), context.accumulator([], _ExamplesParam()))
    slices = time_slices(window.start_ns, window.end_ns, slice_minutes * 60 * NS_PER_SECOND)
    reader = partial(_read_partition, url=mongo.url, database=mongo.database, skipped=skipped)
    rdd = context.parallelize(slices, numSlices=max(1, min(partitions, len(slices))))
    # Rows are validated by parse_metrics_document; Spark's per-row re-check would only cost.
    frame = spark.createDataFrame(rdd.mapPartitions(reader), METRICS_SCHEMA, verifySchema=False)
    return frame, skipped
