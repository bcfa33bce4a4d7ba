"""``vidpipe run model-server``: registry models over the Open Inference Protocol.

Wiring: logging -> torch threads and device -> model cache (the detector's backends) ->
preload -> Prometheus ``/metrics``, ``/healthz``, ``/readyz`` on ``metrics_port`` -> KServe's
``ModelServer`` (gRPC on ``grpc_port``, REST with ``/v2/health/*`` and ``/metrics`` on
``http_port``; both bind every interface, as KServe does) until SIGTERM -> models released.
``/readyz`` turns 200 once the preloaded models are in memory and gRPC accepts connections.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import torch
from kserve import ModelServer
from kserve import model_server as kserve_server

from services.model_server.service import RegistryModel, RegistryModels, SharedModels
from services.model_server.settings import ModelServerSettings
from vidpipe.logs import configure_logging
from vidpipe.modelref import parse_model_ref
from vidpipe.runtime import READY, serve_metrics
from vidpipe_ml.cache import ModelCache, ModelUnavailable

log = logging.getLogger("services.model_server")
SERVICE = "model-server"


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def preload(models: ModelCache, refs: list[str]) -> list[str]:
    """Load ``refs`` now; returns the names loaded (one that fails is logged, and loads on
    demand later)."""
    names = []
    for ref in refs:
        try:
            selector = parse_model_ref(ref)
            loaded = models.get(models.resolve(selector))
        except (ModelUnavailable, ValueError) as exc:
            log.warning("model %s not preloaded: %s", ref, exc)
            continue
        names.append(selector.name)
        log.info("model %s preloaded on %s", ref, loaded.backend, extra={"model": ref})
    return names


def announce_when_serving(port: int, timeout_s: float = 120.0) -> None:
    """In a thread: once ``port`` accepts connections, log "model-server started" and set
    the ready gauge."""

    def wait() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            log.error("gRPC port %d did not open in %.0f s", port, timeout_s)
            return
        READY.labels(SERVICE).set(1)
        log.info("%s started", SERVICE, extra={"grpc_port": port})

    threading.Thread(target=wait, name="announce", daemon=True).start()


def main(settings: ModelServerSettings | None = None) -> None:
    settings = settings or ModelServerSettings()
    configure_logging(settings.log_level)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    device = pick_device(settings.device)
    models = ModelCache(
        settings.mlflow.tracking_uri,
        device,
        settings.alias_refresh_s,
        max_models=settings.max_models,
        backend=settings.backend,
        precision=settings.precision,
    )
    shared = SharedModels(models)
    repository = RegistryModels(shared, settings.mlflow.tracking_uri, settings.default_alias)
    preloaded = [
        RegistryModel(name, shared, settings.default_alias)
        for name in dict.fromkeys(preload(models, settings.preload_models))
    ]
    serve_metrics(settings.metrics_port, settings.metrics_host)
    # KServe reads its gRPC message limits from its argument namespace
    kserve_server.args.grpc_max_send_message_length = settings.grpc_max_message_bytes
    kserve_server.args.grpc_max_receive_message_length = settings.grpc_max_message_bytes
    server = ModelServer(
        http_port=settings.http_port,
        grpc_port=settings.grpc_port,
        max_threads=settings.grpc_threads,
        registered_models=repository,
        enable_latency_logging=False,
        enable_docs_url=False,
    )
    log.info(
        "serving registry models on %s",
        device,
        extra={"grpc_port": settings.grpc_port, "http_port": settings.http_port},
    )
    announce_when_serving(settings.grpc_port)
    try:
        server.start(preloaded)  # until SIGTERM / SIGINT (KServe's own handlers)
    finally:
        READY.labels(SERVICE).set(0)
        models.close()
    log.info("%s stopped", SERVICE)


if __name__ == "__main__":
    main()
