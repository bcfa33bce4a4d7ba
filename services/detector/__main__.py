"""``vidpipe run detector``: consume frames, detect, publish detections and metrics."""

from __future__ import annotations

import asyncio
import logging

import torch

from services.detector.service import DetectorService
from services.detector.settings import DetectorSettings
from vidpipe.configstore import ConfigStore
from vidpipe.latest import LatestFrames
from vidpipe.modelref import parse_model_ref
from vidpipe.objectstore import ObjectStore
from vidpipe.runner import ConsumerContext, ConsumerSpec, Wired, Wiring, run_consumer
from vidpipe.topics import FRAMES_DECODED
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


def wiring(settings: DetectorSettings) -> Wiring:
    async def wire(context: ConsumerContext) -> Wired:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        device = pick_device(settings.device)
        configs = ConfigStore(settings.postgres, settings.redis)
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
        )
        context.exit_stack.callback(models.close)
        await asyncio.to_thread(preload, models, settings.preload_models)
        service = DetectorService(
            store=ObjectStore(settings.s3, max_connections=settings.fetch_concurrency * 2),
            configs=configs,
            models=models,
            producer=context.producer,
            dead_letters=context.dead_letters,
            device=device,
            batch_size=settings.batch_size,
            fetch_concurrency=settings.fetch_concurrency,
            max_frame_age_ms=settings.max_frame_age_ms,
            latest=latest,
        )
        log.info("detector on %s", device, extra={"device": str(device)})
        return Wired(service.handle_batch)

    return wire


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
