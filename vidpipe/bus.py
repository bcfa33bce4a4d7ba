"""Kafka access for every service: producers, consumer groups, dead letters, the batch loop.

Delivery is at-least-once: a consumer commits a partition's offset only after the handler
has returned, i.e. after the effects of every message up to that offset are durable. Effects
are keyed by frame, so a redelivered message overwrites instead of duplicating. Idempotent
and transactional producers are deliberately not used (the local broker does not support
aiokafka's InitProducerId request); ``acks="all"`` is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import Counter

from vidpipe.events import DeadLetter, encode_event
from vidpipe.settings import KafkaSettings
from vidpipe.topics import dead_letter_topic

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter(
    "vidpipe_dead_letters_total",
    "Messages sent to a dead-letter topic",
    ["service", "source_topic", "error_type"],
)


def make_producer(settings: KafkaSettings, linger_ms: int = 5) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas; not idempotent (see module doc)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        enable_idempotence=False,
        linger_ms=linger_ms,
        max_request_size=4 * 1024 * 1024,
    )


def make_consumer(
    settings: KafkaSettings, group_id: str, *topics: str, max_poll_records: int = 500
) -> AIOKafkaConsumer:
    """A consumer-group member with manual commits, starting from the earliest offset.

    ``earliest`` matters: a new group must see frames produced before it joined, and the
    local broker's ``end_offsets`` is unreliable.
    """
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        max_poll_interval_ms=600_000,
    )


@dataclass(frozen=True)
class Rejected:
    """A message a handler gives up on, with the reason that goes to the dead-letter topic."""

    record: ConsumerRecord[bytes, bytes]
    reason: str
    error_type: str


class DeadLetterPublisher:
    """Sends rejected messages to ``<topic>.dlq`` with their reason and original payload."""

    def __init__(self, producer: AIOKafkaProducer, service: str) -> None:
        self._producer = producer
        self._service = service

    async def publish(self, rejected: Sequence[Rejected]) -> None:
        """Send and wait for acknowledgement of every dead letter (they must be durable
        before the source offset is committed)."""
        futures = []
        for item in rejected:
            rec = item.record
            letter = DeadLetter(
                source_topic=rec.topic,
                partition=rec.partition,
                offset=rec.offset,
                key=rec.key.decode(errors="backslashreplace") if rec.key else None,
                reason=item.reason,
                error_type=item.error_type,
                service=self._service,
                failed_ts_ns=time.time_ns(),
                payload=(rec.value or b"").decode(errors="backslashreplace"),
            )
            log.warning(
                "dead-lettered message: %s",
                item.reason,
                extra={"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
            )
            DEAD_LETTERS.labels(self._service, rec.topic, item.error_type).inc()
            futures.append(
                await self._producer.send(
                    dead_letter_topic(rec.topic), encode_event(letter), key=rec.key
                )
            )
        if futures:
            await asyncio.gather(*futures)


BatchHandler = Callable[[list[ConsumerRecord[bytes, bytes]]], Awaitable[None]]


async def consume_batches(
    consumer: AIOKafkaConsumer,
    handle: BatchHandler,
    stop: asyncio.Event,
    *,
    max_records: int,
    timeout_ms: int,
) -> None:
    """Poll up to ``max_records`` messages (waiting at most ``timeout_ms``), hand them to
    ``handle`` as one batch across partitions, then commit each partition's next offset.

    ``handle`` must only return once the batch's effects are durable; if it raises, nothing
    is committed and the exception propagates (the process restarts and the batch is
    redelivered). Returns when ``stop`` is set.
    """
    while not stop.is_set():
        polled = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        records = [rec for batch in polled.values() for rec in batch]
        if not records:
            continue
        await handle(records)
        offsets = {
            TopicPartition(tp.topic, tp.partition): batch[-1].offset + 1
            for tp, batch in polled.items()
            if batch
        }
        await consumer.commit(offsets)
