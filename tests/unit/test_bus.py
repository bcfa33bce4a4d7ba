"""The at-least-once core (vidpipe.bus) with in-memory fakes: what is committed, and when."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError
from pydantic import SecretStr

from tests.unit.fakes import FakeProducer, record
from vidpipe.bus import (
    COMMITS_REFUSED,
    DeadLetterPublisher,
    Rejected,
    client_options,
    consume_batches,
)
from vidpipe.events import DeadLetter, parse_event
from vidpipe.settings import KafkaSettings
from vidpipe.topics import FRAMES_DECODED, dead_letter_topic
from vidpipe_cli.demo.watch import PipelineWatch


class FakeConsumer:
    """Serves prepared polls, then empty ones; records every commit and what preceded it.

    Like aiokafka: a paused partition's records are not returned (they wait), ``commit``
    of a partition not assigned raises ``IllegalStateError``, ``resume`` of one raises too,
    and ``commit_error`` (when set) is raised by the next commit, as after a rebalance.
    """

    def __init__(self, polls: list[list[ConsumerRecord[bytes, bytes]]], log: list[str]) -> None:
        self._polls = polls
        self.log = log
        self.committed: list[dict[TopicPartition, int]] = []
        self.assigned: set[TopicPartition] = {
            TopicPartition(r.topic, r.partition) for poll in polls for r in poll
        }
        self._paused: set[TopicPartition] = set()
        self.polls_while_paused = 0
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.commit_error: Exception | None = None

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, Any]:
        await asyncio.sleep(0)
        if self._paused and self._paused >= self.assigned:
            self.polls_while_paused += 1
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        if not self._polls:
            return batch
        waiting = []
        for rec in self._polls.pop(0):
            tp = TopicPartition(rec.topic, rec.partition)
            if tp in self._paused:
                waiting.append(rec)
            else:
                batch.setdefault(tp, []).append(rec)
        if waiting:
            self._polls.insert(0, waiting)
        return batch

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def paused(self) -> set[TopicPartition]:
        return self._paused & self.assigned

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        if not set(partitions) <= self.assigned:
            raise IllegalStateError(f"No current assignment for {set(partitions) - self.assigned}")
        self._paused -= set(partitions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.commit_error is not None:
            error, self.commit_error = self.commit_error, None
            raise error
        if not offsets.keys() <= self.assigned:
            raise IllegalStateError("Partition is not assigned")
        self.log.append("commit")
        self.committed.append(offsets)


def _records(*offsets: int, partition: int = 0) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        dataclasses.replace(
            record("frames.decoded.v1", b'{"n": %d}' % o, offset=o), partition=partition
        )
        for o in offsets
    ]


TP0 = TopicPartition("frames.decoded.v1", 0)
TP1 = TopicPartition("frames.decoded.v1", 1)


async def _run(consumer: FakeConsumer, handle: Any, stop: asyncio.Event, **kw: Any) -> None:
    await asyncio.wait_for(
        consume_batches(
            consumer,
            handle,
            stop,
            max_records=10,
            timeout_ms=1,
            service="test",
            keepalive_ms=10,
            **kw,
        ),
        timeout=5,
    )


async def test_consume_batches_when_handled_then_commits_after_the_effects() -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(0, 1, 2), _records(3)], log)
    stop = asyncio.Event()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        await asyncio.sleep(0)
        log.append(f"effects {[r.offset for r in records]}")
        if records[-1].offset == 3:
            stop.set()

    await _run(consumer, handle, stop)

    assert log == ["effects [0, 1, 2]", "commit", "effects [3]", "commit"]
    tp = TopicPartition("frames.decoded.v1", 0)
    assert consumer.committed == [{tp: 3}, {tp: 4}]  # the next offset to read


async def test_consume_batches_when_handler_raises_then_nothing_is_committed() -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(0, 1)], log)

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        raise RuntimeError("S3 exploded")

    with pytest.raises(RuntimeError, match="S3 exploded"):
        await _run(consumer, handle, asyncio.Event())
    assert consumer.committed == []


async def test_dead_letters_when_rejected_then_published_and_acked_before_the_commit() -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(7, 8)], log)
    producer = FakeProducer()
    dead_letters = DeadLetterPublisher(producer, "detector")
    stop = asyncio.Event()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        await dead_letters.publish([Rejected(records[1], "undecodable JPEG", "undecodable_image")])
        log.append(f"dead letters {len(producer.on(dead_letter_topic('frames.decoded.v1')))}")
        stop.set()

    await _run(consumer, handle, stop)

    assert log == ["dead letters 1", "commit"]
    letter = json.loads(producer.on("frames.decoded.v1.dlq")[0])
    assert (letter["offset"], letter["reason"], letter["error_type"]) == (
        8,
        "undecodable JPEG",
        "undecodable_image",
    )
    assert letter["payload"] == '{"n": 8}'


async def test_consume_batches_when_poll_is_empty_then_calls_on_idle() -> None:
    log: list[str] = []
    consumer = FakeConsumer([], log)
    stop = asyncio.Event()

    async def idle() -> None:
        log.append("idle")
        if len(log) == 3:
            stop.set()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        raise AssertionError("no records were polled")

    await _run(consumer, handle, stop, on_idle=idle)
    assert log == ["idle", "idle", "idle"]


def test_client_options_when_sasl_configured_then_scram_credentials_passed() -> None:
    plain = client_options(KafkaSettings())
    assert plain == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    scram = client_options(
        KafkaSettings(
            bootstrap_servers="kafka:9092",
            security_protocol="SASL_PLAINTEXT",
            sasl_username="detector",
            sasl_password=SecretStr("s3cret"),
        )
    )
    assert scram["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (scram["sasl_plain_username"], scram["sasl_plain_password"]) == ("detector", "s3cret")
    assert "ssl_context" in client_options(KafkaSettings(security_protocol="SASL_SSL"))


def _refused(reason: str) -> float:
    return COMMITS_REFUSED.labels("test", reason)._value.get()


@pytest.mark.parametrize(
    "error",
    [
        CommitFailedError("group rebalanced"),
        IllegalStateError("No partitions assigned"),
        RebalanceInProgressError(),
    ],
)
async def test_consume_batches_when_commit_refused_after_rebalance_then_counted_and_goes_on(
    error: Exception,
) -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(0, 1), _records(2)], log)
    consumer.commit_error = error
    stop = asyncio.Event()
    handled: list[list[int]] = []
    before = _refused(type(error).__name__)

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        handled.append([r.offset for r in records])
        if records[-1].offset == 2:
            stop.set()

    await _run(consumer, handle, stop)  # does not raise: the replica keeps running

    assert handled == [[0, 1], [2]]
    assert consumer.committed == [{TP0: 3}]  # the next batch commits again
    assert _refused(type(error).__name__) == before + 1


async def test_consume_batches_when_partition_revoked_mid_batch_commits_only_the_rest() -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(0, 1) + _records(5, partition=1)], log)
    stop = asyncio.Event()
    before = _refused("revoked")

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        consumer.assigned.discard(TP1)  # a replica joined and took partition 1
        stop.set()

    await _run(consumer, handle, stop)

    assert consumer.committed == [{TP0: 2}]
    assert _refused("revoked") == before + 1


async def test_consume_batches_when_batch_is_slow_then_polls_paused_and_resumes_after() -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(0), _records(1)], log)
    stop = asyncio.Event()
    during: list[set[TopicPartition]] = []

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        await asyncio.sleep(0.1)  # ten keep-alive periods
        during.append(consumer.paused())
        log.append(f"effects {[r.offset for r in records]}")
        if records[-1].offset == 1:
            stop.set()

    await _run(consumer, handle, stop)

    assert during == [{TP0}, {TP0}]  # paused while handled: nothing new fetched
    assert consumer.polls_while_paused >= 4  # kept polling: the group keeps the member
    assert log == ["effects [0]", "commit", "effects [1]", "commit"]  # nothing skipped
    assert consumer.paused() == set()  # resumed


async def test_consume_batches_when_partition_assigned_mid_batch_pauses_and_resumes_it() -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(0)], log)
    stop = asyncio.Event()
    new_records = _records(7, 8, partition=1)

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        # a rebalance hands this member partition 1, whose records a poll returns at once
        consumer.assigned.add(TP1)
        consumer._polls.insert(0, new_records)
        await asyncio.sleep(0.1)
        stop.set()

    await _run(consumer, handle, stop)

    assert (TP1, 7) in consumer.seeks or consumer._polls == [new_records]  # not lost
    assert consumer.paused() == set()
    assert consumer.committed == [{TP0: 1}]


async def test_consume_batches_when_partitions_revoked_mid_batch_resumes_only_assigned() -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(0) + _records(3, partition=1)], log)
    stop = asyncio.Event()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        await asyncio.sleep(0.03)
        consumer.assigned.discard(TP1)  # resume(TP1) would raise IllegalStateError now
        stop.set()

    await _run(consumer, handle, stop)

    assert consumer.paused() == set() and consumer.committed == [{TP0: 1}]


async def test_consume_batches_when_a_partition_was_paused_before_leaves_it_paused() -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(0)], log)
    consumer.assigned.add(TP1)
    consumer.pause(TP1)  # someone else's back-off
    stop = asyncio.Event()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        await asyncio.sleep(0.03)
        stop.set()

    await _run(consumer, handle, stop)

    assert consumer.paused() == {TP1}


async def test_dead_letters_when_batch_replayed_then_counted_once_by_source() -> None:
    producer = FakeProducer()
    dead_letters = DeadLetterPublisher(producer, "detector")
    bad = dataclasses.replace(_records(8)[0], topic=FRAMES_DECODED)

    for _ in range(2):  # handled, commit refused, replayed by the new owner
        await dead_letters.publish([Rejected(bad, "undecodable JPEG", "undecodable_image")])

    published = producer.on(dead_letter_topic(FRAMES_DECODED))
    letters = [parse_event(DeadLetter, value) for value in published]
    assert len(letters) == 2
    assert {letter.source_id for letter in letters} == {f"{FRAMES_DECODED}/0/8"}
    watch = PipelineWatch(KafkaSettings(), "acme", "cam-1", since_ns=0)
    for value in published:
        watch._observe(dead_letter_topic(FRAMES_DECODED), value)
    assert watch.seen.dead_letters == 1
