"""Models from the MLflow registry, loaded by URI and cached per resolved version.

A client config names ``models:/NAME@ALIAS`` (or a fixed version). Aliases are resolved to
a version at most every ``alias_refresh_s`` seconds, so moving an alias (a promotion) swaps
the model on a running detector without restart. Loaded models are kept per
(name, version); a failure to resolve or load is remembered briefly so a missing model
does not turn every frame into a registry round trip.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import mlflow
import torch
from mlflow import MlflowClient

from vidpipe.configstore import ClientConfig
from vidpipe.events import ModelRef

log = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    """The config's model (name, alias or version) cannot be resolved or loaded."""


@dataclass(frozen=True)
class LoadedModel:
    """A detection model following torchvision's inference contract, plus ``labels``.

    ``module(images)`` takes ``list[Tensor[3, H, W]]`` float32 RGB in 0..1 and returns, per
    image, ``{"boxes": [N, 4] xyxy px, "scores": [N], "labels": [N] int64}``;
    ``labels[i]`` names label id ``i``.
    """

    ref: ModelRef
    module: torch.nn.Module
    labels: tuple[str, ...]


class ModelCache:
    def __init__(
        self,
        tracking_uri: str,
        device: torch.device,
        alias_refresh_s: float = 10.0,
        failure_ttl_s: float = 10.0,
    ) -> None:
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._tracking_uri = tracking_uri
        self._device = device
        self._alias_refresh_s = alias_refresh_s
        self._failure_ttl_s = failure_ttl_s
        self._aliases: dict[tuple[str, str], tuple[str, float]] = {}
        self._models: dict[ModelRef, LoadedModel] = {}
        self._failures: dict[str, tuple[str, float]] = {}

    def resolve(self, config: ClientConfig) -> ModelRef:
        """Name + concrete version for the config. Raises :class:`ModelUnavailable`."""
        if config.model_version is not None:
            return ModelRef(name=config.model_name, version=config.model_version)
        assert config.model_alias is not None
        key = (config.model_name, config.model_alias)
        cached = self._aliases.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self._alias_refresh_s:
            return ModelRef(name=config.model_name, version=cached[0])
        self._raise_if_recently_failed(config.model_uri)
        try:
            version = self._client.get_model_version_by_alias(*key).version
        except Exception as exc:
            self._remember_failure(config.model_uri, f"cannot resolve alias: {exc}")
            raise ModelUnavailable(f"{config.model_uri}: cannot resolve alias ({exc})") from exc
        if cached is not None and cached[0] != str(version):
            log.info(
                "alias moved", extra={"model": config.model_uri, "from": cached[0], "to": version}
            )
        self._aliases[key] = (str(version), now)
        return ModelRef(name=config.model_name, version=str(version))

    def get(self, ref: ModelRef) -> LoadedModel:
        """The loaded model for a resolved version (loads on first use, ~2–3 s on CPU).

        Raises:
            ModelUnavailable: the version does not exist, cannot be downloaded, or does not
                expose a ``labels`` list.
        """
        loaded = self._models.get(ref)
        if loaded is not None:
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
        loaded = LoadedModel(ref=ref, module=module, labels=labels)
        self._models[ref] = loaded
        log.info(
            "model loaded",
            extra={
                "model": uri,
                "labels": len(labels),
                "load_s": round(time.perf_counter() - started, 2),
            },
        )
        return loaded

    def _raise_if_recently_failed(self, uri: str) -> None:
        failure = self._failures.get(uri)
        if failure is not None and time.monotonic() - failure[1] < self._failure_ttl_s:
            raise ModelUnavailable(f"{uri}: {failure[0]}")

    def _remember_failure(self, uri: str, reason: str) -> None:
        self._failures[uri] = (reason, time.monotonic())
