"""``vidpipe run trainer``: train queued jobs one at a time until SIGTERM.

Start-up: re-queue jobs a dead trainer left ``running``, then train every job already
queued in Postgres (dashboard submissions and lost events), then consume
``training.jobs.v1`` (group ``trainer``), committing each offset after its job finished.
Postgres is polled every ``poll_s`` between events, so the topic only makes pick-up faster.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.trainer.announce import TRAINING_JOBS, TrainingJobQueued, ensure_topic
from services.trainer.jobs import JobStore
from services.trainer.service import process_job
from services.trainer.settings import TrainerSettings
from vidpipe.events import InvalidEvent, parse_event
from vidpipe.logs import configure_logging
from vidpipe.runtime import install_stop_signal

log = logging.getLogger("services.trainer")


def make_job_consumer(settings: TrainerSettings) -> AIOKafkaConsumer:
    """Manual commits, earliest offset, one record per poll, and a poll interval as long as
    the longest job (training blocks between polls; the group must not evict us)."""
    return AIOKafkaConsumer(
        TRAINING_JOBS,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=1,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        max_poll_interval_ms=settings.max_job_s * 1000,
    )


async def drain_queued(
    settings: TrainerSettings, queue: JobStore, stop: asyncio.Event, cancel: threading.Event
) -> int:
    """Recover orphans, then train queued jobs oldest first until none is left; returns
    how many were attempted."""
    await asyncio.to_thread(queue.recover_orphans, settings.stale_after_s, settings.max_attempts)
    done = 0
    while not stop.is_set():
        job_id = await asyncio.to_thread(queue.next_queued)
        if job_id is None:
            break
        await asyncio.to_thread(process_job, settings, queue, job_id, cancel)
        done += 1
    return done


async def run(settings: TrainerSettings, stop: asyncio.Event | None = None) -> None:
    """The trainer loop; returns when ``stop`` (default: SIGTERM/SIGINT) is set."""
    stop = stop or install_stop_signal()
    cancel = threading.Event()  # seen by the training thread between epochs
    stop_watch = asyncio.create_task(_forward(stop, cancel))
    queue = JobStore(settings.postgres.dsn.get_secret_value(), settings.clients)
    await ensure_topic(settings.kafka)
    consumer = make_job_consumer(settings)
    await consumer.start()
    log.info("trainer started", extra={"group": settings.group_id, "device": settings.device})
    try:
        while not stop.is_set():
            await drain_queued(settings, queue, stop, cancel)
            polled = await consumer.getmany(timeout_ms=int(settings.poll_s * 1000))
            for tp, records in polled.items():
                for record in records:
                    if stop.is_set():
                        return  # uncommitted: redelivered to the next trainer
                    await _handle(settings, queue, record.value or b"", cancel)
                    await consumer.commit(
                        {TopicPartition(tp.topic, tp.partition): record.offset + 1}
                    )
    finally:
        stop_watch.cancel()
        await consumer.stop()
        log.info("trainer stopped")


async def _handle(
    settings: TrainerSettings, queue: JobStore, raw: bytes, cancel: threading.Event
) -> None:
    try:
        event = parse_event(TrainingJobQueued, raw)
    except InvalidEvent as exc:
        # Nothing to retry: the job (if any) is still found through Postgres polling.
        log.warning("ignoring malformed training event: %s", exc)
        return
    await asyncio.to_thread(process_job, settings, queue, event.job_id, cancel)


async def _forward(stop: asyncio.Event, cancel: threading.Event) -> None:
    await stop.wait()
    cancel.set()


def main(settings: TrainerSettings | None = None) -> None:
    settings = settings or TrainerSettings()
    configure_logging(settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
