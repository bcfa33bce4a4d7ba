"""``vidpipe run metrics-sink``: merge ``metrics.v1`` into MongoDB ``frame_metrics``."""

from __future__ import annotations

import asyncio

from services.metrics_sink.service import MetricsSinkService
from services.metrics_sink.settings import MetricsSinkSettings
from vidpipe.metricsstore import MetricsStore
from vidpipe.runner import ConsumerContext, ConsumerSpec, Wired, Wiring, run_consumer
from vidpipe.topics import METRICS


def wiring(settings: MetricsSinkSettings) -> Wiring:
    async def wire(context: ConsumerContext) -> Wired:
        store = MetricsStore(settings.mongo)
        context.exit_stack.callback(store.close)
        await asyncio.to_thread(store.ensure_indexes)
        return Wired(MetricsSinkService(store, context.dead_letters).handle_batch)

    return wire


def main(settings: MetricsSinkSettings | None = None) -> None:
    settings = settings or MetricsSinkSettings()
    spec = ConsumerSpec.of("metrics-sink", (METRICS,), settings)
    run_consumer(spec, settings, wiring(settings))


if __name__ == "__main__":
    main()
