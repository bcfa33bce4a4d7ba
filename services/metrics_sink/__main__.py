"""``vidpipe run metrics-sink``: merge ``metrics.v1`` into MongoDB ``frame_metrics``."""

from __future__ import annotations

import asyncio
import logging

from services.metrics_sink.service import MetricsSinkService
from services.metrics_sink.settings import MetricsSinkSettings
from vidpipe.bus import DeadLetterPublisher, consume_batches, make_consumer, make_producer
from vidpipe.logs import configure_logging
from vidpipe.metricsstore import MetricsStore
from vidpipe.runtime import install_stop_signal, serve_metrics
from vidpipe.topics import METRICS

log = logging.getLogger("services.metrics_sink")


async def run(settings: MetricsSinkSettings) -> None:
    stop = install_stop_signal()
    serve_metrics(settings.metrics_port)
    store = MetricsStore(settings.mongo)
    await asyncio.to_thread(store.ensure_indexes)
    producer = make_producer(settings.kafka)
    consumer = make_consumer(
        settings.kafka, settings.group_id, METRICS, max_poll_records=settings.max_records
    )
    service = MetricsSinkService(store, DeadLetterPublisher(producer, "metrics-sink"))
    await producer.start()
    await consumer.start()
    log.info("metrics sink started")
    try:
        await consume_batches(
            consumer,
            service.handle_batch,
            stop,
            max_records=settings.max_records,
            timeout_ms=settings.poll_timeout_ms,
        )
    finally:
        await consumer.stop()
        await producer.stop()
        store.close()
        log.info("metrics sink stopped")


def main(settings: MetricsSinkSettings | None = None) -> None:
    settings = settings or MetricsSinkSettings()
    configure_logging(settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
