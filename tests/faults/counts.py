"""Counting what the pipeline made, straight from the stores: S3 objects under a prefix,
MongoDB metrics documents, and a consumer group's committed offsets and lag."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import TopicPartition

from vidpipe.bus import make_consumer
from vidpipe.metricsstore import MetricsStore
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings


def s3_objects(settings: ServiceSettings, bucket: str, prefix: str, suffix: str = "") -> int:
    """Objects in ``bucket`` whose key starts with ``prefix`` (and ends with ``suffix``)."""
    return sum(1 for k in ObjectStore(settings.s3).iter_keys(bucket, prefix) if k.endswith(suffix))


def mongo_documents(settings: ServiceSettings, query: dict[str, Any]) -> int:
    """``frame_metrics`` documents matching ``query``."""
    store = MetricsStore(settings.mongo)
    try:
        return store.count(query)
    finally:
        store.close()


async def end_offsets(settings: ServiceSettings, topic: str) -> dict[int, int]:
    """Each partition's next offset to be written (its high watermark)."""
    consumer = make_consumer(settings.kafka, f"faults-probe-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: int(offset) for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def committed_offsets(settings: ServiceSettings, group: str, topic: str) -> dict[int, int]:
    """``group``'s committed offset per partition of ``topic`` (0 where none)."""
    consumer = make_consumer(settings.kafka, group)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        return {p: (await consumer.committed(TopicPartition(topic, p))) or 0 for p in parts}
    finally:
        await consumer.stop()


async def group_lag(settings: ServiceSettings, group: str, topic: str) -> int:
    """Messages of ``topic`` that ``group`` has not committed (sum over partitions)."""
    ends = await end_offsets(settings, topic)
    done = await committed_offsets(settings, group, topic)
    return sum(max(0, end - done.get(p, 0)) for p, end in ends.items())


async def start_group_at_end(settings: ServiceSettings, group: str, topic: str) -> dict[int, int]:
    """Commit ``group``'s offsets at the end of every partition, so a new consumer group
    reads only what is produced from now on (not the topic's whole history)."""
    ends = await end_offsets(settings, topic)
    consumer = make_consumer(settings.kafka, group, topic)
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while len(consumer.assignment()) < len(ends):
            assert asyncio.get_running_loop().time() < deadline, "no assignment"
            await consumer.getmany(timeout_ms=200, max_records=1)
            for tp in consumer.assignment():
                consumer.seek(tp, ends[tp.partition])
        await consumer.commit({TopicPartition(topic, p): end for p, end in ends.items()})
    finally:
        await consumer.stop()
    return ends


async def read_since(
    settings: ServiceSettings, topic: str, starts: dict[int, int]
) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` of every record of ``topic`` from ``starts`` (offset per partition,
    e.g. :func:`end_offsets` taken before the scenario) up to the partitions' current ends
    and one empty poll past them; reads by assignment (nothing committed).

    Raises:
        AssertionError: the ends are not reached within 120 s.
    """
    ends = await end_offsets(settings, topic)
    consumer = make_consumer(settings.kafka, f"faults-read-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    found: list[tuple[bytes, bytes]] = []
    try:
        todo = {p: end for p, end in ends.items() if end > starts.get(p, 0)}
        consumer.assign([TopicPartition(topic, p) for p in todo])
        for p in todo:
            consumer.seek(TopicPartition(topic, p), starts.get(p, 0))
        deadline = asyncio.get_running_loop().time() + 120
        idle = False
        while todo or not idle:  # past the ends, one empty poll more (ends may lag)
            assert asyncio.get_running_loop().time() < deadline, f"{topic}: left {todo}"
            polled = await consumer.getmany(timeout_ms=1000, max_records=5000)
            idle = not polled
            found += [(r.key or b"", r.value or b"") for rs in polled.values() for r in rs]
            for p in list(todo):
                if await consumer.position(TopicPartition(topic, p)) >= todo[p]:
                    del todo[p]
    finally:
        await consumer.stop()
    return found
