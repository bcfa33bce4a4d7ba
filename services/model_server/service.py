"""The model server's unit of work: one Open Inference Protocol request, the core of a
registry model version on this server's backend.

Models are not listed up front: every registered model of the MLflow registry is servable
by name (:class:`RegistryModels` creates its KServe model on first request, after checking
the name exists). A request names the version (``"7"``) or an alias (``"production"``; none:
the default alias) in ``model_version``; the server resolves an alias itself and answers
with the concrete version that ran. Versions load through the same bounded
:class:`~vidpipe_ml.cache.ModelCache` and backends (torch, OpenVINO) as the detector's
in-process inference, so a remote result is the local result.

Failures map onto gRPC codes the caller classifies (:mod:`vidpipe_ml.remote`): a version the
registry cannot serve now is ``UNAVAILABLE`` (KServe's ``ModelNotReady``: retried); bad
tensors or a model that does not split are ``INVALID_ARGUMENT``; an unknown name is
``NOT_FOUND``.

This server has no tenancy of its own: it serves any registered model to whoever reaches
it, so only detectors may reach it (the Kubernetes NetworkPolicy, the compose network).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from typing import Protocol

import torch
from kserve import InferRequest, InferResponse, Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.model_repository import ModelRepository
from mlflow import MlflowClient
from pydantic import ValidationError

from vidpipe.events import ModelRef
from vidpipe.modelref import VERSION_PATTERN, ModelSelector
from vidpipe_ml.cache import ModelCache, ModelUnavailable
from vidpipe_ml.inference import LoadedModel
from vidpipe_ml.oip import BadTensors, decode_request, encode_response

log = logging.getLogger(__name__)


class Models(Protocol):
    def resolve(self, selector: ModelSelector) -> ModelRef: ...
    def get(self, ref: ModelRef) -> LoadedModel: ...


class SharedModels:
    """A :class:`~vidpipe_ml.cache.ModelCache` shared by concurrent requests: resolving and
    loading take turns (the cache is not thread-safe); running the loaded cores does not."""

    def __init__(self, cache: ModelCache) -> None:
        self._cache = cache
        self._lock = threading.Lock()

    def resolve(self, selector: ModelSelector) -> ModelRef:
        with self._lock:
            return self._cache.resolve(selector)

    def get(self, ref: ModelRef) -> LoadedModel:
        with self._lock:
            return self._cache.get(ref)


def selector_of(name: str, version: str, default_alias: str) -> ModelSelector:
    """The registry selector a request names: ``version`` digits, an alias, or empty (the
    default alias). Raises ``ValueError`` for a malformed name or version."""
    wanted = version or default_alias
    if re.fullmatch(VERSION_PATTERN, wanted):
        return ModelSelector(name=name, version=wanted)
    return ModelSelector(name=name, alias=wanted)


class RegistryModel(Model):
    """One registered model name; any of its versions, through the shared cache."""

    def __init__(self, name: str, models: Models, default_alias: str) -> None:
        super().__init__(name)
        self._models = models
        self._default_alias = default_alias
        self.ready = True

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        """Run the core of the requested version on ``payload``'s ``images`` tensor."""
        try:
            selector = selector_of(self.name, payload.model_version or "", self._default_alias)
            batch = decode_request(payload)
        except (ValidationError, ValueError) as exc:
            raise InvalidInput(str(exc)) from exc
        try:
            ref, outputs, backend = await asyncio.to_thread(self._run, selector, batch)
        except ModelUnavailable as exc:
            log.warning("cannot serve %s: %s", selector.uri, exc)
            raise ModelNotReady(selector.short, str(exc)) from exc
        except (TypeError, BadTensors) as exc:
            raise InvalidInput(str(exc)) from exc
        return encode_response(payload, ref, outputs, backend)

    def _run(
        self, selector: ModelSelector, batch: torch.Tensor
    ) -> tuple[ModelRef, tuple[torch.Tensor, ...], str]:
        """Resolve, load (cached) and run the core; returns (version run, outputs on the CPU,
        backend). Raises ModelUnavailable, TypeError (no core)."""
        loaded = self._models.get(self._models.resolve(selector))
        with torch.inference_mode():
            batch = batch.to(next(loaded.module.parameters()).device)
            if loaded.network is None and batch.dim() == 4:
                # as the model's own prepare hands it over (NHWC is faster on CPU convs)
                batch = batch.contiguous(memory_format=torch.channels_last)
            outputs = loaded.run_core(batch)
        return loaded.ref, tuple(o.cpu() for o in outputs), str(loaded.backend)


class RegistryModels(ModelRepository):
    """KServe's model repository over the MLflow registry: a name is servable when the
    registry has it (checked once per name; misses are checked again on the next request)."""

    def __init__(self, models: Models, tracking_uri: str, default_alias: str) -> None:
        super().__init__()
        self._cache = models
        self._default_alias = default_alias
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def get_model(self, name: str) -> RegistryModel | None:
        found = self.models.get(name)
        if found is not None:
            return found
        try:
            self._client.get_registered_model(name)
        except Exception as exc:  # unknown name, or the registry is unreachable: not servable
            log.info("model %r not servable: %s", name, exc)
            return None
        model = RegistryModel(name, self._cache, self._default_alias)
        self.update(model)
        return model
