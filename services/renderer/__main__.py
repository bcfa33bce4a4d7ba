"""``vidpipe run renderer``: draw detections, write annotated frames and MP4 clips."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.renderer.service import RendererService
from services.renderer.settings import RendererSettings
from vidpipe.bus import DeadLetterPublisher, consume_batches, make_consumer, make_producer
from vidpipe.logs import configure_logging
from vidpipe.objectstore import ObjectStore
from vidpipe.runtime import install_stop_signal, serve_metrics
from vidpipe.topics import DETECTIONS

log = logging.getLogger("services.renderer")


async def _flush_idle_clips(service: RendererService, idle_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=idle_s / 2)
        await service.flush_idle(idle_s)


async def run(settings: RendererSettings) -> None:
    stop = install_stop_signal()
    serve_metrics(settings.metrics_port)
    producer = make_producer(settings.kafka)
    consumer = make_consumer(
        settings.kafka, settings.group_id, DETECTIONS, max_poll_records=settings.max_records
    )
    service = RendererService(
        store=ObjectStore(settings.s3),
        producer=producer,
        dead_letters=DeadLetterPublisher(producer, "renderer"),
        jpeg_quality=settings.jpeg_quality,
        clip_frames=settings.clip_frames,
        clip_fps=settings.clip_fps,
    )
    await producer.start()
    await consumer.start()
    log.info("renderer started", extra={"group": settings.group_id})
    flusher = asyncio.create_task(_flush_idle_clips(service, settings.clip_idle_s, stop))
    try:
        await consume_batches(
            consumer,
            service.handle_batch,
            stop,
            max_records=settings.max_records,
            timeout_ms=settings.poll_timeout_ms,
        )
    finally:
        stop.set()
        await flusher
        await service.flush_all()
        await consumer.stop()
        await producer.stop()
        log.info("renderer stopped")


def main(settings: RendererSettings | None = None) -> None:
    settings = settings or RendererSettings()
    configure_logging(settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
