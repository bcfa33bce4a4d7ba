"""Follow one camera's frames through every stage by reading the pipeline's own topics.

A throw-away consumer group reads ``frames.decoded.v2``, ``detections.v2``, ``metrics.v2``
and the dead-letter topics from the beginning and keeps the events of one camera captured
after ``since_ns``. That is what the demo's progress bars and latency figures come from.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from vidpipe.bus import make_consumer
from vidpipe.events import (
    DeadLetter,
    DetectionsProduced,
    FrameDecoded,
    FrameMetrics,
    InvalidEvent,
    ModelRef,
    parse_event,
)
from vidpipe.settings import KafkaSettings
from vidpipe.topics import DETECTIONS, FRAMES_DECODED, METRICS, TOPICS, dead_letter_topic


@dataclass
class StageTimes:
    """``frame_seq -> timestamp (ns)`` of one stage."""

    at: dict[int, int] = field(default_factory=dict)

    def throughput_fps(self) -> float:
        """Frames per second between the stage's first and last frame."""
        if len(self.at) < 2:
            return 0.0
        span_s = (max(self.at.values()) - min(self.at.values())) / 1e9
        return round((len(self.at) - 1) / span_s, 2) if span_s > 0 else 0.0


@dataclass
class Observation:
    decoded: StageTimes = field(default_factory=StageTimes)
    detected: StageTimes = field(default_factory=StageTimes)
    rendered: StageTimes = field(default_factory=StageTimes)
    latency_ms: dict[int, float] = field(default_factory=dict)
    labels: dict[int, Counter[str]] = field(default_factory=dict)
    #: source ids (:attr:`DeadLetter.source_id`) of the dead-lettered messages
    dead_lettered: set[str] = field(default_factory=set)
    model: ModelRef | None = None
    backend: str | None = None
    #: stage -> frame_seqs it dropped (decoder: skipped; detector: over the age budget)
    dropped: dict[str, set[int]] = field(
        default_factory=lambda: {"decoder": set(), "detector": set(), "renderer": set()}
    )

    @property
    def dead_letters(self) -> int:
        """Messages dead-lettered (each counted once, however often it was replayed)."""
        return len(self.dead_lettered)

    def settled(self) -> bool:
        """Every decoded frame detected or dropped, every detected frame rendered."""
        decoded, detected = set(self.decoded.at), set(self.detected.at)
        return (
            bool(decoded)
            and decoded <= detected | self.dropped["detector"]
            and (detected <= set(self.rendered.at))
        )

    def detections_by_label(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for per_frame in self.labels.values():
            total.update(per_frame)
        return dict(total.most_common())

    def latency_percentiles(self) -> dict[str, float]:
        """p50/p95 of capture -> detections published, ms (numpy's linear interpolation)."""
        if not self.latency_ms:
            return {"p50": 0.0, "p95": 0.0}
        values = np.fromiter(self.latency_ms.values(), dtype=np.float64)
        return {
            "p50": round(float(np.percentile(values, 50)), 1),
            "p95": round(float(np.percentile(values, 95)), 1),
        }


class PipelineWatch:
    def __init__(self, kafka: KafkaSettings, client_id: str, camera_id: str, since_ns: int):
        dlqs = [t.name for t in TOPICS if t.name.endswith(".dlq")]
        self._consumer = make_consumer(
            kafka, f"watch-{uuid.uuid4().hex[:8]}", FRAMES_DECODED, DETECTIONS, METRICS, *dlqs
        )
        self._client_id = client_id
        self._camera_id = camera_id
        self._since_ns = since_ns
        self._dlqs = set(dlqs) | {dead_letter_topic(FRAMES_DECODED)}
        self.seen = Observation()

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 500) -> None:
        polled = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        for batch in polled.values():
            for rec in batch:
                self._observe(rec.topic, rec.value or b"")

    def _mine(self, client_id: str, camera_id: str, capture_ts_ns: int) -> bool:
        return (
            client_id == self._client_id
            and camera_id == self._camera_id
            and capture_ts_ns >= self._since_ns
        )

    def _observe(self, topic: str, value: bytes) -> None:
        seen = self.seen
        try:
            if topic == FRAMES_DECODED:
                frame = parse_event(FrameDecoded, value)
                if self._mine(frame.client_id, frame.camera_id, frame.capture_ts_ns):
                    seen.decoded.at[frame.frame_seq] = frame.decoded_ts_ns
            elif topic == DETECTIONS:
                det = parse_event(DetectionsProduced, value)
                if self._mine(det.client_id, det.camera_id, det.capture_ts_ns):
                    seen.detected.at[det.frame_seq] = det.detected_ts_ns
                    seen.latency_ms[det.frame_seq] = (det.detected_ts_ns - det.capture_ts_ns) / 1e6
                    seen.labels[det.frame_seq] = Counter(d.label for d in det.detections)
                    seen.model = det.model
            elif topic == METRICS:
                m = parse_event(FrameMetrics, value)
                if not self._mine(m.client_id, m.camera_id, m.capture_ts_ns):
                    return
                if m.dropped:
                    seen.dropped[m.stage].add(m.frame_seq)
                elif m.stage == "renderer" and m.rendered_ts_ns is not None:
                    seen.rendered.at[m.frame_seq] = m.rendered_ts_ns
                elif m.stage == "detector" and m.backend is not None:
                    seen.backend = m.backend
            elif topic in self._dlqs:
                letter = parse_event(DeadLetter, value)
                # Messages are keyed by camera_id, and so are their dead letters.
                # A replayed batch dead-letters again: count each source message once.
                if letter.failed_ts_ns >= self._since_ns and letter.key == self._camera_id:
                    seen.dead_lettered.add(letter.source_id)
        except InvalidEvent:
            # Malformed events are the consumers' business (they dead-letter them).
            return
