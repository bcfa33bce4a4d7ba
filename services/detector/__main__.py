"""``vidpipe run detector``: consume frames, detect, publish detections and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import torch

from services.detector.priority import InferenceGate
from services.detector.requests import PostgresLedger, RequestService
from services.detector.service import DetectorService, count_stale
from services.detector.settings import DetectorSettings
from vidpipe.bus import consume_batches, make_consumer
from vidpipe.configstore import ConfigStore
from vidpipe.db import create_engine
from vidpipe.latest import LatestFrames
from vidpipe.modelref import parse_model_ref
from vidpipe.objectstore import ObjectStore
from vidpipe.retries import Interrupted, RetryingHandler
from vidpipe.runner import ConsumerContext, ConsumerSpec, Wired, Wiring, run_consumer
from vidpipe.topics import FRAMES_DECODED, REQUESTS
from vidpipe_ml.cache import ModelCache, ModelUnavailable, RemoteTarget

log = logging.getLogger("services.detector")


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def preload(models: ModelCache, refs: list[str]) -> None:
    """Load ``refs`` now; one that cannot be loaded is logged and left to load on demand."""
    for ref in refs:
        try:
            loaded = models.get(models.resolve(parse_model_ref(ref)))
        except (ModelUnavailable, ValueError) as exc:
            log.warning("model %s not preloaded: %s", ref, exc)
            continue
        log.info("model %s preloaded on %s", ref, loaded.backend, extra={"model": ref})


def remote_target(settings: DetectorSettings) -> RemoteTarget | None:
    """The model server of the ``remote`` backend, if that is the backend."""
    if settings.backend != "remote" or settings.inference_url is None:
        return None
    return RemoteTarget(
        settings.inference_url, settings.inference_timeout_s, settings.inference_retry_s
    )


def bound_registry_retries(settings: DetectorSettings) -> None:
    """Cap the MLflow client's own HTTP retries (by default minutes of backoff): the cache
    serves stale and asks again itself, so a long retry only delays noticing the registry is
    back. Set only where the environment does not say otherwise."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.registry_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(settings.registry_timeout_s)))


def wiring(settings: DetectorSettings) -> Wiring:
    async def wire(context: ConsumerContext) -> Wired:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        bound_registry_retries(settings)
        device = pick_device(settings.device)
        configs = ConfigStore(
            settings.postgres,
            settings.redis,
            timeout_s=settings.config_timeout_s,
            on_stale=count_stale,
        )
        context.exit_stack.callback(configs.close)
        latest = LatestFrames(settings.redis)
        context.exit_stack.push_async_callback(latest.aclose)
        models = ModelCache(
            settings.mlflow.tracking_uri,
            device,
            settings.alias_refresh_s,
            max_models=settings.max_models,
            backend=settings.backend,
            precision=settings.precision,
            remote=remote_target(settings),
            registry_timeout_s=settings.registry_timeout_s,
            load_timeout_s=settings.model_load_timeout_s,
            on_stale=count_stale,
        )
        context.exit_stack.callback(models.close)
        await asyncio.to_thread(preload, models, settings.preload_models)
        store = ObjectStore(settings.s3, max_connections=settings.fetch_concurrency * 2)
        gate = InferenceGate()
        await serve_requests(settings, context, store, models, device, gate)
        service = DetectorService(
            store=store,
            configs=configs,
            models=models,
            producer=context.producer,
            dead_letters=context.dead_letters,
            device=device,
            batch_size=settings.batch_size,
            fetch_concurrency=settings.fetch_concurrency,
            max_frame_age_ms=settings.max_frame_age_ms,
            latest=latest,
            gate=gate,
        )
        log.info("detector on %s", device, extra={"device": str(device)})
        return Wired(service.handle_batch)

    return wire


async def serve_requests(
    settings: DetectorSettings,
    context: ConsumerContext,
    store: ObjectStore,
    models: ModelCache,
    device: torch.device,
    gate: InferenceGate,
) -> None:
    """Consume on-demand requests in a loop of their own (own group, own commits) next to
    the frames (see :mod:`services.detector.requests` for why); a failure there stops the
    process like one in the frame loop."""
    engine = create_engine(settings.postgres, pool_size=2)
    context.exit_stack.callback(engine.dispose)
    service = RequestService(
        store, PostgresLedger(engine), models, context.producer, context.dead_letters, device, gate
    )
    consumer = make_consumer(
        settings.kafka,
        settings.requests_group_id,
        REQUESTS,
        max_poll_records=settings.requests_max_records,
    )
    await consumer.start()

    handle = RetryingHandler(
        service.handle_batch, context.dead_letters, context.stop, "detector-requests", consumer
    )

    async def loop() -> None:
        try:
            await consume_batches(
                consumer,
                handle,
                context.stop,
                max_records=settings.requests_max_records,
                timeout_ms=200,
                service="detector-requests",
            )
        except Interrupted:
            log.info("requests consumer stopped during a retry; that batch is left uncommitted")
        finally:
            context.stop.set()  # the frame loop ends too: the process restarts whole

    task = asyncio.create_task(loop())

    async def finish() -> None:
        context.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()

    context.exit_stack.push_async_callback(finish)
    log.info("requests consumer started", extra={"group": settings.requests_group_id})


def main(settings: DetectorSettings | None = None) -> None:
    settings = settings or DetectorSettings()
    spec = ConsumerSpec(
        service="detector",
        topics=(FRAMES_DECODED,),
        group_id=settings.group_id,
        max_records=settings.batch_size * 4,
        poll_timeout_ms=settings.batch_timeout_ms,
        metrics_port=settings.metrics_port,
        metrics_host=settings.metrics_host,
    )
    run_consumer(spec, settings, wiring(settings))


if __name__ == "__main__":
    main()
