"""Why a sink: the detector and renderer publish ``FrameMetrics`` to Kafka instead of
writing MongoDB themselves. That keeps a slow or unavailable metrics store out of the
detection hot path, lets every stage add its own hop timestamps to the same per-frame
document, and turns many small writes into one bulk upsert per poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import ConsumerRecord
from prometheus_client import Counter

from vidpipe.bus import DeadLetterPublisher, Rejected
from vidpipe.events import FrameMetrics, InvalidEvent, parse_event

WRITTEN = Counter("vidpipe_metrics_sink_documents_total", "Metrics merged into MongoDB")


class MetricsWriter(Protocol):
    def upsert_many(self, batch: Sequence[FrameMetrics]) -> None: ...


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
        await asyncio.to_thread(self._writer.upsert_many, valid)
        WRITTEN.inc(len(valid))
        await self._dead_letters.publish(rejected)
