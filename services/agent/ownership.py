"""Which agent owns a camera: the one Kafka assigns the camera's control partition.

A camera's control events are keyed :func:`~vidpipe.events.camera_key`, so Kafka's default
partitioner (murmur2 of the key over the topic's partitions; aiokafka's own function, the
one every producer of the events uses) puts them in one partition; the consumer group
``agents`` gives each partition to one agent, which runs the cameras hashing to it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from vidpipe.events import camera_key

log = logging.getLogger(__name__)

_PARTITIONER = DefaultPartitioner()


def control_partition(client_id: str, camera_id: str, partitions: Sequence[int]) -> int:
    """The partition of ``partitions`` (the topic's partition ids, any order) that holds the
    camera's control events.

    Raises:
        ValueError: ``partitions`` is empty.
    """
    if not partitions:
        raise ValueError("the control topic has no partitions")
    partition: int = _PARTITIONER(camera_key(client_id, camera_id), sorted(partitions), [])
    return partition


class ControlListener(ConsumerRebalanceListener):
    """Hands the agent its control partitions: ``on_assigned(partitions, all_partitions)``
    after a rebalance, ``on_revoked(partitions)`` before one (aiokafka waits for both, so a
    revoked camera's decoder is stopped before any other agent gets its partition)."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        on_assigned: Callable[[set[int], list[int]], Awaitable[None]],
        on_revoked: Callable[[set[int]], Awaitable[None]],
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        partitions = {tp.partition for tp in revoked if tp.topic == self._topic}
        log.info("control partitions revoked: %s", sorted(partitions))
        await self._on_revoked(partitions)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        partitions = {tp.partition for tp in assigned if tp.topic == self._topic}
        every = sorted(self._consumer.partitions_for_topic(self._topic) or partitions)
        log.info("control partitions assigned: %s of %d", sorted(partitions), len(every))
        await self._on_assigned(partitions, every)
