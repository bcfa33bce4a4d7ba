"""``vidpipe run trainer``: train queued jobs one at a time until SIGTERM.

Through the consumer runner on ``training.jobs.v1`` (group ``trainer``, one record per
poll, a poll interval as long as the longest job): each event's job is trained, then its
offset committed. Whenever a poll finds no event, Postgres is the queue: jobs a dead
trainer left ``running`` are recovered (at start, then at most once per
``recover_every_s``: idle trainers poll often and must not all scan on every poll), then
every queued job is trained oldest first (dashboard submissions whose event was lost). So
the topic only makes pick-up faster.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import ConsumerRecord

from services.trainer.service import process_job
from services.trainer.settings import TrainerSettings
from vidpipe.bus import ensure_topics
from vidpipe.db import create_engine
from vidpipe.events import InvalidEvent, TrainingJobQueued, parse_event
from vidpipe.jobs import JobStore, TrainingJob
from vidpipe.logs import configure_logging
from vidpipe.runner import ConsumerContext, ConsumerSpec, Wired, Wiring, consume
from vidpipe.topics import TRAINING_JOBS, TopicSpec

log = logging.getLogger("services.trainer")


class Orphans(Protocol):
    """What recovery needs of :class:`vidpipe.jobs.JobStore`."""

    def recover_orphans(self, stale_after_s: float, max_attempts: int) -> list[TrainingJob]: ...


@dataclass
class OrphanRecovery:
    """Rate-limited :meth:`JobStore.recover_orphans`: the first call runs it, later calls
    only once ``every_s`` seconds (monotonic clock) have passed since the last run."""

    queue: Orphans
    stale_after_s: float
    max_attempts: int
    every_s: float
    clock: Callable[[], float] = time.monotonic
    _last: float | None = field(default=None, init=False)

    def due(self) -> bool:
        return self._last is None or self.clock() - self._last >= self.every_s

    async def maybe_recover(self) -> int:
        """Recover orphans if due; returns how many jobs were recovered (0 if not due)."""
        if not self.due():
            return 0
        self._last = self.clock()
        found = await asyncio.to_thread(
            self.queue.recover_orphans, self.stale_after_s, self.max_attempts
        )
        return len(found)


def orphan_recovery(settings: TrainerSettings, queue: JobStore) -> OrphanRecovery:
    return OrphanRecovery(
        queue, settings.stale_after_s, settings.max_attempts, settings.recover_every_s
    )


async def drain_queued(
    settings: TrainerSettings,
    queue: JobStore,
    stop: asyncio.Event,
    cancel: threading.Event,
    recovery: OrphanRecovery | None = None,
) -> int:
    """Recover orphans (through ``recovery``, rate-limited; a fresh one recovers at once),
    then train queued jobs oldest first until none is left; returns how many were
    attempted."""
    await (recovery or orphan_recovery(settings, queue)).maybe_recover()
    done = 0
    while not stop.is_set():
        job_id = await asyncio.to_thread(queue.next_queued)
        if job_id is None:
            break
        await asyncio.to_thread(process_job, settings, queue, job_id, cancel)
        done += 1
    return done


def wiring(settings: TrainerSettings) -> Wiring:
    async def wire(context: ConsumerContext) -> Wired:
        engine = create_engine(settings.postgres, pool_size=2)
        context.exit_stack.callback(engine.dispose)
        queue = JobStore(engine, settings.clients)
        recovery = orphan_recovery(settings, queue)
        cancel = threading.Event()  # seen by the training thread before every step

        async def forward_stop() -> None:
            await context.stop.wait()
            cancel.set()

        forwarder = asyncio.create_task(forward_stop())
        context.exit_stack.callback(forwarder.cancel)

        async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
            for record in records:
                try:
                    event = parse_event(TrainingJobQueued, record.value or b"")
                except InvalidEvent as exc:
                    # Nothing to retry: the job (if any) is still found through Postgres.
                    log.warning("ignoring malformed training event: %s", exc)
                    continue
                await asyncio.to_thread(process_job, settings, queue, event.job_id, cancel)

        async def idle() -> None:
            await drain_queued(settings, queue, context.stop, cancel, recovery)

        log.info(
            "trainer on %s",
            settings.device,
            extra={"device": settings.device, "trainer_id": settings.trainer_id},
        )
        return Wired(handle, on_idle=idle)

    return wire


def spec(settings: TrainerSettings) -> ConsumerSpec:
    return ConsumerSpec(
        service="trainer",
        topics=(TRAINING_JOBS,),
        group_id=settings.group_id,
        max_records=1,
        poll_timeout_ms=int(settings.poll_s * 1000),
        metrics_port=settings.metrics_port,
        max_poll_interval_ms=settings.max_job_s * 1000,
        metrics_host=settings.metrics_host,
    )


async def run(settings: TrainerSettings, stop: asyncio.Event | None = None) -> None:
    """The trainer loop; returns when ``stop`` (default: SIGTERM/SIGINT) is set."""
    await ensure_topics(settings.kafka, [TopicSpec(TRAINING_JOBS, 1)])
    await consume(spec(settings), settings.kafka, wiring(settings), stop)


def main(settings: TrainerSettings | None = None) -> None:
    settings = settings or TrainerSettings()
    configure_logging(settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
