"""``vidpipe run status-sink``: agents' heartbeats (``agents.status.v1``) into the Redis
status store the dashboard reads (:mod:`vidpipe.agent_status`)."""

from __future__ import annotations

from redis import asyncio as aioredis

from services.status_sink.service import StatusSinkService
from services.status_sink.settings import StatusSinkSettings
from vidpipe.runner import ConsumerContext, ConsumerSpec, Wired, Wiring, run_consumer
from vidpipe.topics import AGENTS_STATUS


def wiring(settings: StatusSinkSettings) -> Wiring:
    async def wire(context: ConsumerContext) -> Wired:
        timeout = settings.redis_timeout_s
        redis = aioredis.Redis.from_url(
            settings.redis.url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        # types-redis predates redis 5's aclose (close() is deprecated since)
        context.exit_stack.push_async_callback(redis.aclose)  # type: ignore[attr-defined]
        service = StatusSinkService(redis, context.dead_letters, settings.gauges_every_s)
        return Wired(service.handle_batch, on_idle=service.on_idle)

    return wire


def main(settings: StatusSinkSettings | None = None) -> None:
    settings = settings or StatusSinkSettings()
    spec = ConsumerSpec.of("status-sink", (AGENTS_STATUS,), settings)
    run_consumer(spec, settings, wiring(settings))


if __name__ == "__main__":
    main()
