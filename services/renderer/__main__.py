"""``vidpipe run renderer``: draw detections, write annotated frames and MP4 clips."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter

from services.renderer.service import RendererService
from services.renderer.settings import RendererSettings
from vidpipe.objectstore import ObjectStore
from vidpipe.runner import ConsumerContext, ConsumerSpec, Wired, Wiring, run_consumer
from vidpipe.runtime import limit_malloc_arenas
from vidpipe.topics import DETECTIONS, REQUESTS_DONE

log = logging.getLogger("services.renderer")

FLUSH_FAILURES = Counter(
    "vidpipe_renderer_idle_flush_failures_total",
    "Idle clip flushes that failed (retried at the next tick; clips are rebuilt at start-up)",
)


async def _flush_idle_clips(service: RendererService, idle_s: float, stop: asyncio.Event) -> None:
    """Every ``idle_s / 2`` s, write clips idle for ``idle_s``; supervised: a failure is
    logged and counted and the loop goes on (it never ends the task silently)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=idle_s / 2)
        try:
            await service.flush_idle(idle_s)
        except Exception:
            FLUSH_FAILURES.inc()
            log.exception("idle clip flush failed; retrying in %.1f s", idle_s / 2)


def wiring(settings: RendererSettings) -> Wiring:
    async def wire(context: ConsumerContext) -> Wired:
        service = RendererService(
            store=ObjectStore(settings.s3),
            producer=context.producer,
            dead_letters=context.dead_letters,
            jpeg_quality=settings.jpeg_quality,
            clip_frames=settings.clip_frames,
            clip_fps=settings.clip_fps,
        )
        recovered = await service.recover_pending()
        if recovered:
            log.info("rebuilt %d clips left unwritten by an earlier run", recovered)
        flusher = asyncio.create_task(
            _flush_idle_clips(service, settings.clip_idle_s, context.stop)
        )

        async def finish() -> None:
            context.stop.set()
            try:
                await flusher
            finally:
                await service.flush_all()  # always, however the flusher ended

        context.exit_stack.push_async_callback(finish)
        return Wired(service.handle_batch)

    return wire


def main(settings: RendererSettings | None = None) -> None:
    limit_malloc_arenas()
    settings = settings or RendererSettings()
    spec = ConsumerSpec.of("renderer", (DETECTIONS, REQUESTS_DONE), settings)
    run_consumer(spec, settings, wiring(settings))


if __name__ == "__main__":
    main()
