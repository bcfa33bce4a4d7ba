"""The agent's unit of work: keep the decoders of the cameras it owns in line with Postgres.

Three things change what it owns or runs, all serialised by one lock:

- a rebalance: assigned partitions' cameras are loaded and started; revoked partitions'
  decoders are stopped before the rebalance goes on (no camera runs on two agents);
- a :class:`~vidpipe.events.CameraChanged` event: the camera's row is re-read (the event is
  only a wake-up call) and its decoder started, restarted or stopped; a ``failed`` or ended
  camera is retried;
- a periodic reconcile: every owned partition's rows re-read, so a lost event or a failed
  read only delays a change.

A control event is committed after it was handled; a Postgres outage while handling it is
logged and left to the next reconcile (which comes sooner then) instead of blocking the
partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy.exc import SQLAlchemyError

from services.agent.owned import CameraKey, CameraRow, OwnedCameras
from services.agent.ownership import control_partition
from vidpipe.bus import DeadLetterPublisher, Rejected
from vidpipe.events import CameraChanged, InvalidEvent, parse_event

log = logging.getLogger(__name__)

#: Seconds before a reconcile retries a failed read of the rows.
RETRY_READ_S = 2.0


class RowSource(Protocol):
    """Camera rows (:class:`services.agent.rows.CameraRows`); blocking, run in a thread."""

    def load(self, owns: Callable[[CameraKey], bool]) -> dict[CameraKey, CameraRow]: ...

    def get(self, key: CameraKey) -> CameraRow | None: ...


class Agent:
    """Owned partitions and their cameras; see the module doc."""

    def __init__(
        self,
        cameras: OwnedCameras,
        rows: RowSource,
        dead_letters: DeadLetterPublisher | None = None,
        reconcile_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cameras = cameras
        self._rows = rows
        self._dead_letters = dead_letters
        self._reconcile_s = reconcile_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self.partitions: set[int] = set()
        self._all: list[int] = []
        self._next_reconcile = clock() + reconcile_s

    def owns(self, key: CameraKey) -> bool:
        """Whether the camera's control partition is one of this agent's."""
        return bool(self._all) and control_partition(*key, self._all) in self.partitions

    async def assigned(self, partitions: set[int], all_partitions: Sequence[int]) -> None:
        """Take ``partitions`` of the control topic (ids ``all_partitions``): start their
        enabled cameras."""
        async with self._lock:
            self.partitions = set(partitions)
            self._all = sorted(all_partitions)
            await self._reconcile()

    async def revoked(self, partitions: set[int]) -> None:
        """Give ``partitions`` up: their decoders are stopped when this returns."""
        async with self._lock:
            gone = [k for k in self.cameras.keys if self._partition(k) in partitions]
            await self.cameras.release(gone)
            self.partitions -= partitions

    async def handle(self, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply a batch of control events (invalid ones are dead-lettered)."""
        changed: set[CameraKey] = set()
        rejected = []
        for record in records:
            try:
                event = parse_event(CameraChanged, record.value or b"")
            except InvalidEvent as exc:
                rejected.append(Rejected(record, str(exc), type(exc).__name__))
                continue
            key = (event.client_id, event.camera_id)
            if self.owns(key):
                changed.add(key)
            else:  # a producer with another partitioner: the hash owner runs it
                log.warning(
                    "control event for %s/%s in partition %d; it hashes elsewhere",
                    *key, record.partition,
                )  # fmt: skip
        if rejected and self._dead_letters is not None:
            try:
                await self._dead_letters.publish(rejected)
            except Exception as exc:  # a wake-up call is not worth the agent's cameras
                log.error("%d control event(s) not dead-lettered: %s", len(rejected), exc)
        if not changed:
            return
        async with self._lock:
            try:
                rows = await asyncio.to_thread(self._read, changed)
            except SQLAlchemyError as exc:
                log.error("camera rows unreadable; reconciling in %.0f s: %s", RETRY_READ_S, exc)
                self._next_reconcile = self._clock() + RETRY_READ_S
                return
            await self.cameras.apply(rows, retry=changed)

    async def reconcile_if_due(self) -> None:
        """Re-read the owned cameras when the reconcile period (or a retry delay) passed."""
        if self._clock() < self._next_reconcile:
            return
        async with self._lock:
            await self._reconcile()

    async def consume(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """Poll control events, handle, commit, reconcile when due; until ``stop`` is set."""
        while not stop.is_set():
            polled = await consumer.getmany(timeout_ms=1000)
            records = [rec for batch in polled.values() for rec in batch]
            if records:
                await self.handle(records)
                offsets = {
                    TopicPartition(tp.topic, tp.partition): batch[-1].offset + 1
                    for tp, batch in polled.items()
                    if batch
                }
                try:
                    await consumer.commit(offsets)
                except KafkaError as exc:  # a rebalance meanwhile: the new owner re-reads
                    log.warning("control offsets not committed: %s", exc)
            if not stop.is_set():
                await self.reconcile_if_due()

    async def shutdown(self) -> None:
        """Stop every decoder (partitions are kept until the consumer leaves the group)."""
        async with self._lock:
            await self.cameras.stop_all()

    async def _reconcile(self) -> None:
        self._next_reconcile = self._clock() + self._reconcile_s
        if not self.partitions:
            await self.cameras.release(self.cameras.keys)
            return
        try:
            loaded = await asyncio.to_thread(self._rows.load, self.owns)
        except SQLAlchemyError as exc:
            log.error("camera rows unreadable; retrying in %.0f s: %s", RETRY_READ_S, exc)
            self._next_reconcile = self._clock() + RETRY_READ_S
            return
        await self.cameras.release(k for k in self.cameras.keys if not self.owns(k))
        changes: dict[CameraKey, CameraRow | None] = dict(loaded)
        changes.update({k: None for k in self.cameras.keys - loaded.keys()})
        await self.cameras.apply(changes)

    def _read(self, keys: set[CameraKey]) -> dict[CameraKey, CameraRow | None]:
        return {key: self._rows.get(key) for key in keys}

    def _partition(self, key: CameraKey) -> int | None:
        return control_partition(*key, self._all) if self._all else None
