"""``vidpipe run detector``: consume frames, detect, publish detections and metrics."""

from __future__ import annotations

import asyncio
import logging

import torch

from services.detector.model_cache import ModelCache
from services.detector.service import DetectorService
from services.detector.settings import DetectorSettings
from vidpipe.bus import DeadLetterPublisher, consume_batches, make_consumer, make_producer
from vidpipe.configstore import ConfigStore
from vidpipe.logs import configure_logging
from vidpipe.objectstore import ObjectStore
from vidpipe.runtime import install_stop_signal, serve_metrics
from vidpipe.topics import FRAMES_DECODED

log = logging.getLogger("services.detector")


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


async def run(settings: DetectorSettings) -> None:
    stop = install_stop_signal()
    serve_metrics(settings.metrics_port)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    device = pick_device(settings.device)
    configs = ConfigStore(settings.postgres, settings.redis)
    producer = make_producer(settings.kafka)
    consumer = make_consumer(
        settings.kafka, settings.group_id, FRAMES_DECODED, max_poll_records=settings.batch_size * 4
    )
    service = DetectorService(
        store=ObjectStore(settings.s3, max_connections=settings.fetch_concurrency * 2),
        configs=configs,
        models=ModelCache(settings.mlflow.tracking_uri, device, settings.alias_refresh_s),
        producer=producer,
        dead_letters=DeadLetterPublisher(producer, "detector"),
        device=device,
        batch_size=settings.batch_size,
        fetch_concurrency=settings.fetch_concurrency,
        max_frame_age_ms=settings.max_frame_age_ms,
    )
    await producer.start()
    await consumer.start()
    log.info("detector started", extra={"device": str(device), "group": settings.group_id})
    try:
        await consume_batches(
            consumer,
            service.handle_batch,
            stop,
            max_records=settings.batch_size * 4,
            timeout_ms=settings.batch_timeout_ms,
        )
    finally:
        await consumer.stop()
        await producer.stop()
        configs.close()
        log.info("detector stopped")


def main(settings: DetectorSettings | None = None) -> None:
    settings = settings or DetectorSettings()
    configure_logging(settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
