"""Kafka access for every service: producers, consumer groups, dead letters, the batch loop.

Delivery is at-least-once: a consumer commits a partition's offset only after the handler
has returned, i.e. after the effects of every message up to that offset are durable. Effects
are keyed by frame, so a redelivered message overwrites instead of duplicating. Idempotent
and transactional producers are deliberately not used (the local broker does not support
aiokafka's InitProducerId request); ``acks="all"`` is.

Rebalances (a replica joining, leaving or restarting) are part of normal operation. A
consumer may keep polling with every assigned partition paused while a batch is handled
(``keepalive_ms``), so it stays in its group however long the batch takes and fetches
nothing new; afterwards the partitions it paused are resumed (those still assigned).
Offsets of partitions revoked during a batch are not committed, and a commit refused
because the group rebalanced meanwhile is logged and counted, not raised: the batch's
effects are idempotent and the partitions' new owner replays from the last committed
offset.
Dead letters are at-least-once too (see :class:`DeadLetterPublisher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError
from aiokafka.helpers import create_ssl_context
from prometheus_client import Counter

from vidpipe.events import DeadLetter, TrainingJobQueued, encode_event
from vidpipe.settings import KafkaSettings
from vidpipe.topics import TOPICS, TRAINING_JOBS, TopicSpec, dead_letter_topic

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36

DEAD_LETTERS = Counter(
    "vidpipe_dead_letters_total",
    "Messages sent to a dead-letter topic",
    ["service", "source_topic", "error_type"],
)


COMMITS_REFUSED = Counter(
    "vidpipe_commits_refused_total",
    "Offset commits refused after a rebalance (the partitions' new owner replays the batch)",
    ["service", "reason"],
)

#: What a commit raises when the group rebalanced under the batch.
REBALANCE_ERRORS = (CommitFailedError, IllegalStateError, RebalanceInProgressError)


class TopicError(RuntimeError):
    """The broker refused to create a topic."""


async def ensure_topics(settings: KafkaSettings, specs: Sequence[TopicSpec] = TOPICS) -> list[str]:
    """Create each topic of ``specs`` that does not exist yet; returns the names created.

    A topic that exists with another partition count is logged, not changed (the local
    broker cannot grow partitions).

    Raises:
        TopicError: the broker refused a topic for another reason than "exists".
    """
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
    await admin.start()
    created: list[str] = []
    try:
        response = await admin.create_topics(
            [NewTopic(spec.name, spec.partitions, replication_factor=1) for spec in specs]
        )
        for name, code, message in response.topic_errors:
            if code == 0:
                created.append(name)
            elif code != _TOPIC_ALREADY_EXISTS:
                raise TopicError(f"creating topic {name} failed: error {code} {message}")
        wanted = {spec.name: spec.partitions for spec in specs}
        for topic in await admin.describe_topics(list(wanted)):
            found = len(topic["partitions"])
            if found != wanted[topic["topic"]]:
                log.warning(
                    "topic %s has %d partitions, wanted %d",
                    topic["topic"], found, wanted[topic["topic"]],
                )  # fmt: skip
    finally:
        await admin.close()
    return created


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """The connection keywords every aiokafka client gets: brokers, and SASL/SCRAM (over TLS
    for ``SASL_SSL``) when the settings ask for it."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol != "PLAINTEXT":
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
        options |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": password,
        }
    if settings.security_protocol == "SASL_SSL":
        options["ssl_context"] = create_ssl_context()
    return options


def make_producer(settings: KafkaSettings, linger_ms: int = 5) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas; not idempotent (see module doc)."""
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=False,
        linger_ms=linger_ms,
        max_request_size=4 * 1024 * 1024,
    )


def make_consumer(
    settings: KafkaSettings,
    group_id: str,
    *topics: str,
    max_poll_records: int = 500,
    max_poll_interval_ms: int = 600_000,
) -> AIOKafkaConsumer:
    """A consumer-group member with manual commits, starting from the earliest offset.

    ``earliest`` matters: a new group must see frames produced before it joined, and the
    local broker's ``end_offsets`` is unreliable. ``max_poll_interval_ms`` bounds how long
    one batch may take before the group gives the member's partitions away.
    """
    return AIOKafkaConsumer(
        *topics,
        **client_options(settings),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        max_poll_interval_ms=max_poll_interval_ms,
    )


@dataclass(frozen=True)
class Rejected:
    """A message a handler gives up on, with the reason that goes to the dead-letter topic."""

    record: ConsumerRecord[bytes, bytes]
    reason: str
    error_type: str


class DeadLetterPublisher:
    """Sends rejected messages to ``<topic>.dlq`` with their reason and original payload.

    At-least-once, like everything else: dead letters are acknowledged before the source
    offset is committed (never lost), so a batch replayed after a crash or a refused commit
    publishes its dead letters again. A dead letter's :attr:`~vidpipe.events.DeadLetter.source_id`
    (source topic/partition/offset) names the message it is about; readers count distinct
    source ids (as the demo's watcher does), not letters.
    """

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
IdleHandler = Callable[[], Awaitable[None]]


async def consume_batches(
    consumer: AIOKafkaConsumer,
    handle: BatchHandler,
    stop: asyncio.Event,
    *,
    max_records: int,
    timeout_ms: int,
    on_idle: IdleHandler | None = None,
    service: str = "consumer",
    keepalive_ms: int | None = None,
) -> None:
    """Poll up to ``max_records`` messages (waiting at most ``timeout_ms``), hand them to
    ``handle`` as one batch across partitions, then commit each partition's next offset.

    With ``keepalive_ms``, the consumer keeps polling that often with its partitions paused
    while ``handle`` runs (:func:`handle_paused`), so a long batch does not cost it its
    group membership; without it (the runner's default: its
    :class:`~vidpipe.retries.RetryingHandler` polls paused itself while it backs off, and
    one poller at a time is the rule) ``handle`` is awaited directly.

    ``handle`` must only return once the batch's effects are durable; if it raises,
    nothing is committed and the exception propagates (the process restarts and the batch
    is redelivered). Offsets of partitions revoked meanwhile are not committed,
    and a commit the group refuses (:data:`REBALANCE_ERRORS`) is logged and counted in
    ``vidpipe_commits_refused_total{service}``: the partitions' new owner replays. A poll
    that returns nothing calls ``on_idle`` (when given). Returns when ``stop`` is set.
    """
    while not stop.is_set():
        polled = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        records = [rec for batch in polled.values() for rec in batch]
        if not records:
            if on_idle is not None and not stop.is_set():
                await on_idle()
            continue
        if keepalive_ms is None:
            await handle(records)
        else:
            await handle_paused(consumer, handle(records), keepalive_ms)
        offsets = {
            TopicPartition(tp.topic, tp.partition): batch[-1].offset + 1
            for tp, batch in polled.items()
            if batch
        }
        await commit_unless_revoked(consumer, offsets, service)


async def handle_paused(
    consumer: AIOKafkaConsumer, work: Awaitable[None], keepalive_ms: int = 500
) -> None:
    """Await ``work`` while the consumer polls every ``keepalive_ms`` with every assigned
    partition paused (partitions assigned by a rebalance meanwhile are paused too; a
    record one of them yields before it is paused is put back with a seek, so it is
    fetched again later). Afterwards the partitions paused here are resumed, except those
    no longer assigned (resuming those raises) and those paused before (someone else's).

    Raises what ``work`` raises.
    """
    task = asyncio.ensure_future(work)
    already = set(consumer.paused())
    paused_here: set[TopicPartition] = set()
    try:
        while not task.done():
            fresh = consumer.assignment() - already - paused_here
            consumer.pause(*fresh)
            paused_here |= fresh
            done, _ = await asyncio.wait({task}, timeout=keepalive_ms / 1000)
            if done:
                break
            polled = await consumer.getmany(timeout_ms=0)
            for tp, batch in polled.items():
                if batch:  # assigned after the pause above: read again after the batch
                    consumer.seek(tp, batch[0].offset)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer.resume(*(paused_here & consumer.assignment()))
    task.result()


async def commit_unless_revoked(
    consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int], service: str
) -> bool:
    """Commit ``offsets`` of the partitions still assigned; whether all were committed.
    Partitions revoked during the batch, and a commit the group refuses because it
    rebalanced (:data:`REBALANCE_ERRORS`), are logged and counted, not raised."""
    assigned = consumer.assignment()
    kept = {tp: offset for tp, offset in offsets.items() if tp in assigned}
    if len(kept) < len(offsets):
        revoked = sorted(f"{tp.topic}/{tp.partition}" for tp in offsets.keys() - kept.keys())
        log.warning(
            "not committing revoked partitions %s: their new owner replays the batch",
            ", ".join(revoked),
            extra={"service": service},
        )
        COMMITS_REFUSED.labels(service, "revoked").inc()
    if not kept:
        return False
    try:
        await consumer.commit(kept)
    except REBALANCE_ERRORS as exc:
        log.warning(
            "commit refused after a rebalance (%s: %s): the partitions' new owner replays",
            type(exc).__name__,
            exc,
            extra={"service": service},
        )
        COMMITS_REFUSED.labels(service, type(exc).__name__).inc()
        return False
    return len(kept) == len(offsets)


async def announce_job(settings: KafkaSettings, job_id: int, timeout_s: float = 5.0) -> bool:
    """Publish :class:`~vidpipe.events.TrainingJobQueued` (acks=all) once the job's row is
    committed, so a trainer starts it at once. Best effort: trainers also poll Postgres, so a
    broker outage only delays the job; returns whether the event was acknowledged."""

    async def send() -> None:
        producer = make_producer(settings, linger_ms=0)
        await producer.start()
        try:
            event = TrainingJobQueued(job_id=job_id)
            await producer.send_and_wait(
                TRAINING_JOBS, encode_event(event), key=str(job_id).encode()
            )
        finally:
            await producer.stop()

    try:
        await asyncio.wait_for(send(), timeout_s)
    except Exception as exc:
        log.warning("training job %d not announced (trainers will poll it): %s", job_id, exc)
        return False
    return True
