"""Rebalance-safe consumption on the real broker: a second replica joins the group while
the first is in the middle of a batch, later leaves again; neither crashes, every message
is handled, and the group ends with nothing uncommitted."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from vidpipe.bus import consume_batches, ensure_topics, make_consumer, make_producer
from vidpipe.settings import ServiceSettings
from vidpipe.topics import TopicSpec

pytestmark = pytest.mark.integration

MESSAGES = 40
PARTITIONS = 4
BATCH_S = 8.0  # longer than a rebalance takes (heartbeat 3 s, then the join)


class Replica:
    """One consumer-group member running :func:`consume_batches` with a slow handler."""

    def __init__(self, settings: ServiceSettings, group: str, topic: str, name: str) -> None:
        self.name = name
        self.consumer = make_consumer(settings.kafka, group, topic, max_poll_records=MESSAGES)
        self.stop = asyncio.Event()
        self.handled: list[tuple[int, int]] = []
        self.batch_started = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def handle(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.batch_started.set()
        await asyncio.sleep(BATCH_S)  # long enough for a rebalance to land inside it
        self.handled += [(r.partition, r.offset) for r in records]

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(
            consume_batches(
                self.consumer,
                self.handle,
                self.stop,
                max_records=MESSAGES,  # one batch over every partition: some get revoked
                timeout_ms=200,
                service=f"it-{self.name}",
                keepalive_ms=200,
            )
        )

    async def leave(self) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task  # raises if the replica crashed
        await self.consumer.stop()


async def _until(event: asyncio.Event, running: list[Replica], timeout_s: float) -> None:
    """Wait for ``event``; a replica that stops meanwhile fails the test with its error."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not event.is_set():
        for replica in running:
            if replica.task is not None and replica.task.done():
                replica.task.result()  # its crash, if it crashed
                pytest.fail(f"replica {replica.name} stopped")
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def _committed(settings: ServiceSettings, group: str, topic: str) -> dict[int, int]:
    consumer = make_consumer(settings.kafka, group)
    await consumer.start()
    try:
        return {
            p: (await consumer.committed(TopicPartition(topic, p))) or 0 for p in range(PARTITIONS)
        }
    finally:
        await consumer.stop()


async def _produce(settings: ServiceSettings, topic: str, wave: int) -> None:
    """``MESSAGES`` messages spread over every partition."""
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for i in range(MESSAGES):
            await producer.send(topic, b"%d-%d" % (wave, i), partition=i % PARTITIONS)
        await producer.flush()
    finally:
        await producer.stop()


async def _assigned(replica: Replica, running: list[Replica], timeout_s: float) -> None:
    assigned = asyncio.Event()

    async def watch() -> None:
        while not replica.consumer.assignment():
            await asyncio.sleep(0.2)
        assigned.set()

    watcher = asyncio.create_task(watch())
    try:
        await _until(assigned, running, timeout_s)
    finally:
        watcher.cancel()


async def test_consume_batches_when_a_replica_joins_and_leaves_mid_batch_then_no_crash_no_loss(
    stack: None, stack_settings: ServiceSettings
) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, group = f"it-rebalance-{tag}", f"it-rebalance-{tag}"
    await ensure_topics(stack_settings.kafka, [TopicSpec(topic, PARTITIONS)])
    first = Replica(stack_settings, group, topic, "a")
    second = Replica(stack_settings, group, topic, "b")
    await _produce(stack_settings, topic, 0)

    await first.start()
    await _until(first.batch_started, [first], 120)
    await second.start()  # joins while the first is inside a batch over every partition
    await _assigned(second, [first, second], 120)
    await _produce(stack_settings, topic, 1)
    await _until(second.batch_started, [first, second], 120)
    await second.leave()  # and leaves mid-run: its partitions go back to the first
    await _produce(stack_settings, topic, 2)
    per_partition = 3 * MESSAGES // PARTITIONS
    expected = {(p, o) for p in range(PARTITIONS) for o in range(per_partition)}
    deadline = asyncio.get_running_loop().time() + 120
    committed: dict[int, int] = {}
    while committed != dict.fromkeys(range(PARTITIONS), per_partition):
        assert first.task is not None and not first.task.done(), "the first replica stopped"
        assert asyncio.get_running_loop().time() < deadline, f"uncommitted: {committed}"
        await asyncio.sleep(0.5)
        committed = await _committed(stack_settings, group, topic)
    await first.leave()

    handled = first.handled + second.handled
    assert set(handled) == expected  # nothing lost; a replayed batch may repeat some
    assert second.handled, "the second replica never handled a batch"
