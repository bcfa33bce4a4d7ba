"""Why a sink: the detector and renderer publish ``FrameMetrics`` to Kafka instead of
writing MongoDB themselves. That keeps a slow or unavailable metrics store out of the
detection hot path, lets every stage add its own hop timestamps to the same per-frame
document, and turns many small writes into one bulk upsert per poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import ConsumerRecord
from prometheus_client import Counter

from vidpipe.bus import DeadLetterPublisher, Rejected
from vidpipe.events import FrameMetrics, InvalidEvent, parse_event

WRITTEN = Counter("vidpipe_metrics_sink_documents_total", "Metrics merged into MongoDB")


class MetricsWriter(Protocol):
    def merge_many(self, fields_by_id: Sequence[tuple[str, dict[str, Any]]]) -> None: ...


def metrics_document(metrics: FrameMetrics) -> dict[str, Any]:
    """The fields one stage contributes to its frame's document: what it knows (``None``
    omitted), flattened for querying. The detector owns detection facts; a render must not
    blank them out."""
    doc = metrics.model_dump(exclude_none=True, exclude={"schema_version", "stage", "model"})
    if metrics.model is not None:
        doc["model_name"] = metrics.model.name
        doc["model_version"] = metrics.model.version
    if metrics.stage == "renderer":
        doc.pop("detections_by_label", None)
        doc.pop("dropped", None)
    return doc


class MetricsSinkService:
    def __init__(self, writer: MetricsWriter, dead_letters: DeadLetterPublisher) -> None:
        self._writer = writer
        self._dead_letters = dead_letters

    async def handle_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        valid: list[FrameMetrics] = []
        rejected: list[Rejected] = []
        for rec in records:
            try:
                valid.append(parse_event(FrameMetrics, rec.value or b""))
            except InvalidEvent as exc:
                rejected.append(Rejected(rec, str(exc), "invalid_event"))
        merged: dict[str, dict[str, Any]] = {}
        for m in valid:  # one write per frame, stages in arrival order
            merged.setdefault(m.frame_id, {}).update(metrics_document(m))
        await asyncio.to_thread(self._writer.merge_many, list(merged.items()))
        WRITTEN.inc(len(valid))
        await self._dead_letters.publish(rejected)
