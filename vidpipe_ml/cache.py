"""Models from the MLflow registry, loaded by reference and cached per resolved version.

A reference names ``models:/NAME@ALIAS`` or a fixed version (:mod:`vidpipe.modelref`).
Aliases are resolved to a version at most every ``alias_refresh_s`` seconds, so moving an
alias (a promotion) swaps the model on a running detector without restart. Loaded models
are kept per (name, version) in a bounded LRU: loading the ``max_models + 1``-th version
evicts the least recently used one and releases its memory (device memory included). A
failure to resolve or load is remembered briefly so a missing model does not turn every
frame into a registry round trip.

Each version runs on the backend :func:`vidpipe_ml.backends.choose_backend` picks from the
requested backend and precision and the OpenVINO artifacts stored with the version
(:mod:`vidpipe_ml.optimize`); an artifact that cannot be fetched or compiled leaves the
version on PyTorch, with a warning. Backend ``remote`` runs each version's core on the model
server of ``remote`` (:mod:`vidpipe_ml.remote`, imported only then: it needs ``kserve``), the
concrete version in every request; a model that does not split into a core stays on PyTorch,
with a warning.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow import MlflowClient

from vidpipe.events import ModelRef
from vidpipe.modelref import ModelSelector
from vidpipe_ml.backends import (
    REMOTE,
    TORCH,
    BackendChoice,
    OpenVinoNetwork,
    Splittable,
    StoredIR,
    choose_backend,
)
from vidpipe_ml.inference import LoadedModel

log = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    """The reference (name, alias or version) cannot be resolved or loaded."""


@dataclass(frozen=True)
class RemoteTarget:
    """Where backend ``remote`` sends cores: ``url`` (``host:port`` of an Open Inference
    Protocol gRPC server), one call's deadline and how long transient failures are retried
    (seconds)."""

    url: str
    timeout_s: float = 30.0
    retry_s: float = 300.0


class ModelCache:
    def __init__(
        self,
        tracking_uri: str,
        device: torch.device,
        alias_refresh_s: float = 10.0,
        failure_ttl_s: float = 10.0,
        max_models: int = 4,
        backend: str = "auto",
        precision: str = "auto",
        ir_dir: Path | None = None,
        remote: RemoteTarget | None = None,
    ) -> None:
        if max_models < 1:
            raise ValueError(f"max_models must be at least 1, got {max_models}")
        if backend == "remote" and remote is None:
            raise ValueError("backend 'remote' needs the model server's address")
        self._remote = remote
        self._backend = backend
        self._precision = precision
        self._ir_dir = ir_dir or Path(tempfile.mkdtemp(prefix="vidpipe-ir-"))
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._tracking_uri = tracking_uri
        self._device = device
        self._alias_refresh_s = alias_refresh_s
        self._failure_ttl_s = failure_ttl_s
        self._max_models = max_models
        self._aliases: dict[tuple[str, str], tuple[str, float]] = {}
        self._models: OrderedDict[ModelRef, LoadedModel] = OrderedDict()
        self._failures: dict[str, tuple[str, float]] = {}

    @property
    def loaded(self) -> list[ModelRef]:
        """Versions held in memory, least recently used first."""
        return list(self._models)

    def resolve(self, selector: ModelSelector) -> ModelRef:
        """Name + concrete version for ``selector``. Raises :class:`ModelUnavailable`."""
        if selector.version is not None:
            return ModelRef(name=selector.name, version=selector.version)
        assert selector.alias is not None
        key = (selector.name, selector.alias)
        cached = self._aliases.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self._alias_refresh_s:
            return ModelRef(name=selector.name, version=cached[0])
        self._raise_if_recently_failed(selector.uri)
        try:
            version = self._client.get_model_version_by_alias(*key).version
        except Exception as exc:
            self._remember_failure(selector.uri, f"cannot resolve alias: {exc}")
            raise ModelUnavailable(f"{selector.uri}: cannot resolve alias ({exc})") from exc
        if cached is not None and cached[0] != str(version):
            log.info("alias moved", extra={"model": selector.uri, "from": cached[0], "to": version})
        self._aliases[key] = (str(version), now)
        return ModelRef(name=selector.name, version=str(version))

    def get(self, ref: ModelRef) -> LoadedModel:
        """The loaded model for a resolved version (loads on first use, ~2–3 s on CPU).

        Raises:
            ModelUnavailable: the version does not exist, cannot be downloaded, or does not
                expose a ``labels`` list.
        """
        loaded = self._models.get(ref)
        if loaded is not None:
            self._models.move_to_end(ref)
            return loaded
        uri = f"models:/{ref.name}/{ref.version}"
        self._raise_if_recently_failed(uri)
        started = time.perf_counter()
        try:
            mlflow.set_tracking_uri(self._tracking_uri)
            module = mlflow.pytorch.load_model(uri, map_location=self._device)
            labels = tuple(str(x) for x in module.labels)
        except Exception as exc:
            self._remember_failure(uri, str(exc))
            raise ModelUnavailable(f"{uri}: cannot load ({exc})") from exc
        module.eval().to(self._device)
        choice, network = self._backend_for(ref, module)
        loaded = LoadedModel(ref, module, labels, choice, network)
        self._models[ref] = loaded
        log.info(
            "model loaded",
            extra={
                "model": uri,
                "labels": len(labels),
                "backend": str(choice),
                "load_s": round(time.perf_counter() - started, 2),
            },
        )
        while len(self._models) > self._max_models:
            self._evict()
        return loaded

    def _backend_for(self, ref: ModelRef, module: torch.nn.Module) -> tuple[BackendChoice, Any]:
        """The backend the version runs on, and its network when that is not the module."""
        if self._backend == "remote" and self._remote is not None:
            if isinstance(module, Splittable):
                from vidpipe_ml.remote import RemoteNetwork  # needs kserve (see the module doc)

                target = self._remote
                return REMOTE, RemoteNetwork(target.url, ref, target.timeout_s, target.retry_s)
            log.warning(
                "models:/%s/%s does not split into a core; it runs whole in PyTorch here",
                ref.name, ref.version,
            )  # fmt: skip
            return TORCH, None
        if self._backend == "torch" or (self._backend == "auto" and self._device.type == "cuda"):
            return TORCH, None
        try:
            tags = self._client.get_model_version(ref.name, ref.version).tags or {}
            stored = StoredIR.of(tags)
            passed = stored.download(self._ir_dir / ref.name / ref.version) if stored.passed else {}
            choice = choose_backend(
                self._backend, self._precision, self._device, module, passed, stored.precision
            )
            if choice.name == "openvino":
                return choice, OpenVinoNetwork(passed[choice.precision], choice.precision)
        except Exception as exc:  # serve in PyTorch rather than not at all
            log.warning(
                "models:/%s/%s stays on PyTorch: %s", ref.name, ref.version, exc,
                extra={"requested_backend": self._backend, "precision": self._precision},
            )  # fmt: skip
        return TORCH, None

    def close(self) -> None:
        """Release every loaded model (and its model-server connection)."""
        while self._models:
            self._evict()

    def _evict(self) -> None:
        ref, loaded = self._models.popitem(last=False)
        close = getattr(loaded.network, "close", None)
        if close is not None:
            close()
        gc.collect()  # the module is freed once no batch holds it any more
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
        log.info("model unloaded", extra={"model": f"models:/{ref.name}/{ref.version}"})

    def _raise_if_recently_failed(self, uri: str) -> None:
        failure = self._failures.get(uri)
        if failure is not None and time.monotonic() - failure[1] < self._failure_ttl_s:
            raise ModelUnavailable(f"{uri}: {failure[0]}")

    def _remember_failure(self, uri: str, reason: str) -> None:
        self._failures[uri] = (reason, time.monotonic())
