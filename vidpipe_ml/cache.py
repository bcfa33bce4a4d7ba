"""Models from the MLflow registry, loaded by reference and cached per resolved version.

A reference names ``models:/NAME@ALIAS`` or a fixed version (:mod:`vidpipe.modelref`).
Aliases are resolved to a version at most every ``alias_refresh_s`` seconds, so moving an
alias (a promotion) swaps the model on a running detector without restart. Loaded models
are kept per (name, version) in a bounded LRU: loading the ``max_models + 1``-th version
evicts the least recently used one and releases its memory (device memory included). A
failure to resolve or load is remembered briefly so a missing model does not turn every
frame into a registry round trip.

Serving through registry outages and model swaps (:meth:`ModelCache.acquire`, the
detector's path; the blocking :meth:`~ModelCache.resolve` / :meth:`~ModelCache.get` serve
other callers):

- registry calls and model loads run in a small thread pool of the cache's own, never on
  the event loop; one resolution per alias and one load per version at a time. An expired
  alias resolution is renewed in the background while the version it named goes on
  serving, so no batch waits for the registry once a reference has been served;
- when the registry fails (unreachable, timing out, any error) and the alias was resolved
  before, the last resolved version goes on serving (stale-while-error: logged, counted
  through ``on_stale("model")``) and resolution is tried again after ``failure_ttl_s``; a
  registry that cannot be reached with nothing resolved yet is :class:`RegistryUnavailable`
  (transient: the caller retries; a missing alias or version stays :class:`ModelUnavailable`);
- when an alias moves, the version it served goes on serving while the new one loads in the
  background; once the new one serves, the old one is unloaded as soon as no caller holds it
  (:meth:`~ModelCache.acquire` / :meth:`~ModelCache.release` count holders) and no other
  reference selects it.

Each version runs on the backend :func:`vidpipe_ml.backends.choose_backend` picks from the
requested backend and precision and the OpenVINO artifacts stored with the version
(:mod:`vidpipe_ml.optimize`); an artifact that cannot be fetched or compiled leaves the
version on PyTorch, with a warning. Backend ``remote`` runs each version's core on the model
server of ``remote`` (:mod:`vidpipe_ml.remote`, imported only then: it needs ``kserve``), the
concrete version in every request; a model that does not split into a core stays on PyTorch,
with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import sys
import tempfile
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from vidpipe.events import ModelRef
from vidpipe.failures import TransientError, classify
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


class RegistryUnavailable(ModelUnavailable, TransientError):
    """The registry (or the model's artifact store) is unreachable or timed out and no
    version of the reference is loaded: retrying later will work."""


#: MLflow error codes that mean "this model does not exist / cannot be asked for", not "later".
_PERMANENT_CODES = {
    "RESOURCE_DOES_NOT_EXIST",
    "INVALID_PARAMETER_VALUE",
    "NOT_FOUND",
    "BAD_REQUEST",
    "MALFORMED_REQUEST",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
}


def registry_failure(what: str, exc: BaseException) -> ModelUnavailable:
    """``exc`` from the registry or a model load as :class:`RegistryUnavailable` (the
    registry or artifact store unreachable, timing out, answering 5xx) or
    :class:`ModelUnavailable` (the model does not exist or is not a detector)."""
    if isinstance(exc, ModelUnavailable):
        return exc
    transient = classify(exc) == "transient" or (
        isinstance(exc, MlflowException) and exc.error_code not in _PERMANENT_CODES
    )
    if transient:
        return RegistryUnavailable(f"{what}: registry unreachable ({exc})")
    return ModelUnavailable(f"{what}: {exc}")


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
        registry_timeout_s: float = 10.0,
        load_timeout_s: float = 120.0,
        on_stale: Callable[[str], None] | None = None,
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
        self._failures: dict[str, tuple[ModelUnavailable, float]] = {}
        self._registry_timeout_s = registry_timeout_s
        self._load_timeout_s = load_timeout_s
        self._on_stale = on_stale
        #: reference uri -> the version serving it (acquire's view)
        self._serving: dict[str, ModelRef] = {}
        #: version -> callers holding it (acquired, not yet released)
        self._holders: Counter[ModelRef] = Counter()
        #: versions that served a reference through acquire (and may be unloaded by it)
        self._served: set[ModelRef] = set()
        self._resolving: dict[str, asyncio.Future[ModelRef]] = {}
        self._resolving_since: dict[str, float] = {}
        self._loading: dict[ModelRef, asyncio.Future[LoadedModel]] = {}
        self._executor: ThreadPoolExecutor | None = None

    @property
    def loaded(self) -> list[ModelRef]:
        """Versions held in memory, least recently used first."""
        return list(self._models)

    def resolve(self, selector: ModelSelector) -> ModelRef:
        """Name + concrete version for ``selector``. Raises :class:`ModelUnavailable`."""
        fresh = self._fresh(selector)
        if fresh is not None:
            return fresh
        assert selector.alias is not None
        key = (selector.name, selector.alias)
        cached = self._aliases.get(key)
        now = time.monotonic()
        try:
            self._raise_if_recently_failed(selector.uri)
            try:
                version = self._client.get_model_version_by_alias(*key).version
            except Exception as exc:
                failure = registry_failure(f"{selector.uri}: cannot resolve alias", exc)
                self._remember_failure(selector.uri, failure)
                raise failure from exc
        except ModelUnavailable as exc:
            stale = self._stale_alias(selector, str(exc))
            if stale is None:
                raise
            return stale
        if cached is not None and cached[0] != str(version):
            log.info("alias moved", extra={"model": selector.uri, "from": cached[0], "to": version})
        self._aliases[key] = (str(version), now)
        return ModelRef(name=selector.name, version=str(version))

    def _fresh(self, selector: ModelSelector) -> ModelRef | None:
        """The version ``selector`` names without asking the registry: its fixed version,
        or its alias's if resolved less than ``alias_refresh_s`` ago."""
        if selector.version is not None:
            return ModelRef(name=selector.name, version=selector.version)
        assert selector.alias is not None
        cached = self._aliases.get((selector.name, selector.alias))
        if cached is not None and time.monotonic() - cached[1] < self._alias_refresh_s:
            return ModelRef(name=selector.name, version=cached[0])
        return None

    def _stale_alias(self, selector: ModelSelector, why: str) -> ModelRef | None:
        """The alias's last resolved version, served stale (counted, logged; resolution
        tried again after ``failure_ttl_s``); None if it was never resolved."""
        key = (selector.name, str(selector.alias))
        cached = self._aliases.get(key)
        if cached is None:
            return None
        retry_at = time.monotonic() + min(self._failure_ttl_s, self._alias_refresh_s)
        self._aliases[key] = (cached[0], retry_at - self._alias_refresh_s)
        if self._on_stale is not None:
            self._on_stale("model")
        log.warning(
            "cannot resolve %s, serving version %s meanwhile: %s",
            selector.uri, cached[0], why,
            extra={"model": selector.uri, "version": cached[0]},
        )  # fmt: skip
        return ModelRef(name=selector.name, version=cached[0])

    def get(self, ref: ModelRef) -> LoadedModel:
        """The loaded model for a resolved version (loads on first use, ~2–3 s on CPU;
        blocking: async callers use :meth:`acquire`).

        Raises:
            RegistryUnavailable: the registry or artifact store cannot be reached.
            ModelUnavailable: the version does not exist or does not expose ``labels``.
        """
        loaded = self._models.get(ref)
        if loaded is not None:
            self._models.move_to_end(ref)
            return loaded
        return self._install(self._load(ref))

    def _load(self, ref: ModelRef) -> LoadedModel:
        """Load ``ref`` from the registry (blocking, thread-safe: touches no cache state
        but the failure memory)."""
        uri = f"models:/{ref.name}/{ref.version}"
        self._raise_if_recently_failed(uri)
        started = time.perf_counter()
        try:
            mlflow.set_tracking_uri(self._tracking_uri)
            module = mlflow.pytorch.load_model(uri, map_location=self._device)
            labels = tuple(str(x) for x in module.labels)
        except Exception as exc:
            failure = registry_failure(f"{uri}: cannot load", exc)
            self._remember_failure(uri, failure)
            raise failure from exc
        module.eval().to(self._device)
        choice, network = self._backend_for(ref, module)
        log.info(
            "model loaded",
            extra={
                "model": uri,
                "labels": len(labels),
                "backend": str(choice),
                "load_s": round(time.perf_counter() - started, 2),
            },
        )
        return LoadedModel(ref, module, labels, choice, network)

    def _install(self, loaded: LoadedModel) -> LoadedModel:
        """Keep ``loaded`` (most recently used), evicting beyond ``max_models``."""
        self._models[loaded.ref] = loaded
        self._models.move_to_end(loaded.ref)
        while len(self._models) > self._max_models:
            self._evict()
        return loaded

    # ---- async serving: the detector's path --------------------------------------------
    async def acquire(self, selector: ModelSelector) -> LoadedModel:
        """The model serving ``selector`` now, held until :meth:`release`.

        Resolves the alias when its resolution is not fresh (off the loop, with a timeout;
        stale-while-error). A version not loaded yet loads in the background while the
        version that served ``selector`` so far goes on serving; with none, this waits for
        the load (up to ``load_timeout_s``).

        Raises:
            RegistryUnavailable: nothing of ``selector`` is loaded and the registry cannot
                be reached or the load did not finish in time (transient: retry).
            ModelUnavailable: the reference does not exist or cannot be loaded.
        """
        ref = await self._resolve_async(selector)
        loaded = self._models.get(ref)
        if loaded is None:
            load = self._load_async(ref)
            previous = self._serving.get(selector.uri)
            current = self._models.get(previous) if previous is not None else None
            if current is not None:
                loaded = current  # keeps serving while the new version loads
            else:
                try:
                    loaded = await asyncio.wait_for(asyncio.shield(load), self._load_timeout_s)
                except TimeoutError as exc:
                    raise RegistryUnavailable(
                        f"{selector.uri}: version {ref.version} still loading after "
                        f"{self._load_timeout_s:.0f} s"
                    ) from exc
        self._serve(selector.uri, loaded.ref)
        if loaded.ref in self._models:
            self._models.move_to_end(loaded.ref)
        self._holders[loaded.ref] += 1
        return loaded

    def release(self, model: LoadedModel) -> None:
        """``model`` is no longer used by the caller that acquired it; a version no
        reference serves any more is unloaded once nobody holds it."""
        self._holders[model.ref] -= 1
        if self._holders[model.ref] <= 0:
            del self._holders[model.ref]
            self._unload_unserved()

    def _serve(self, uri: str, ref: ModelRef) -> None:
        previous = self._serving.get(uri)
        if previous == ref:
            return
        self._serving[uri] = ref
        self._served.add(ref)
        if previous is not None:
            log.info(
                "%s now served by version %s (was %s)", uri, ref.version, previous.version,
                extra={"model": uri, "from": previous.version, "to": ref.version},
            )  # fmt: skip
            self._unload_unserved()

    def _unload_unserved(self) -> None:
        """Unload every version that served a reference before, serves none now and is
        held by nobody (versions loaded through :meth:`get` are left to the LRU)."""
        serving = set(self._serving.values())
        for ref in list(self._models):
            if ref in serving or self._holders.get(ref, 0) > 0 or ref not in self._served:
                continue
            self._served.discard(ref)
            self._unload(ref, self._models.pop(ref))

    def _registry_pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            # its own threads: a frozen registry must not tie up the default executor
            self._executor = ThreadPoolExecutor(2, thread_name_prefix="model-registry")
        return self._executor

    async def _resolve_async(self, selector: ModelSelector) -> ModelRef:
        """The version ``selector`` names now. An expired alias resolution is renewed in the
        background while its last version answers at once (no batch waits for the
        registry); only an alias never resolved waits, up to ``registry_timeout_s``."""
        fresh = self._fresh(selector)
        if fresh is not None:
            return fresh
        pending = self._resolving.get(selector.uri)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = asyncio.ensure_future(
                loop.run_in_executor(self._registry_pool(), self.resolve, selector)
            )
            self._resolving[selector.uri] = pending
            self._resolving_since[selector.uri] = time.monotonic()
            pending.add_done_callback(lambda _: self._resolving.pop(selector.uri, None))
        cached = self._aliases.get((selector.name, str(selector.alias)))
        if cached is not None:
            waited = time.monotonic() - self._resolving_since[selector.uri]
            if waited > self._registry_timeout_s:
                why = f"registry has not answered for {waited:.0f} s"
                return self._stale_alias(selector, why) or ModelRef(
                    name=selector.name, version=cached[0]
                )
            return ModelRef(name=selector.name, version=cached[0])
        try:
            return await asyncio.wait_for(asyncio.shield(pending), self._registry_timeout_s)
        except TimeoutError as exc:
            why = f"registry did not answer within {self._registry_timeout_s:.0f} s"
            raise RegistryUnavailable(f"{selector.uri}: {why}") from exc

    def _load_async(self, ref: ModelRef) -> asyncio.Future[LoadedModel]:
        """The (single) background load of ``ref``; installed in the cache when done."""
        pending = self._loading.get(ref)
        if pending is not None:
            return pending

        async def load() -> LoadedModel:
            loop = asyncio.get_running_loop()
            loaded = await loop.run_in_executor(self._registry_pool(), self._load, ref)
            return self._install(loaded)

        def done(task: asyncio.Future[LoadedModel]) -> None:
            self._loading.pop(ref, None)
            if not task.cancelled() and task.exception() is not None:
                log.warning("models:/%s/%s not loaded: %s", ref.name, ref.version, task.exception())

        pending = asyncio.ensure_future(load())
        self._loading[ref] = pending
        pending.add_done_callback(done)
        return pending

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
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _evict(self) -> None:
        """Unload the least recently used version nobody holds (else the least recently
        used one: memory stays bounded; a holder keeps its object until it releases)."""
        idle = [ref for ref in self._models if self._holders.get(ref, 0) == 0]
        ref = idle[0] if idle else next(iter(self._models))
        self._unload(ref, self._models.pop(ref))

    def _unload(self, ref: ModelRef, loaded: LoadedModel) -> None:
        close = getattr(loaded.network, "close", None)
        if close is not None:
            close()
        del loaded
        gc.collect()  # the module is freed once no batch holds it any more
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
        _return_freed_memory()
        log.info("model unloaded", extra={"model": f"models:/{ref.name}/{ref.version}"})

    def _raise_if_recently_failed(self, uri: str) -> None:
        failure = self._failures.get(uri)
        if failure is not None and time.monotonic() - failure[1] < self._failure_ttl_s:
            raise type(failure[0])(f"{failure[0]} (remembered)")

    def _remember_failure(self, uri: str, failure: ModelUnavailable) -> None:
        self._failures[uri] = (failure, time.monotonic())


def _return_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise, so a process's
    resident memory would only grow with each model swap)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)
