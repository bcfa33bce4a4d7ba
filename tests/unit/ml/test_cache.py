"""The model cache's serving rules with a fake registry and instant loads: no re-resolution
while fresh, stale-while-error, background swaps, unloading of unserved versions, the LRU."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

from vidpipe.events import ModelRef
from vidpipe.failures import classify
from vidpipe.modelref import ModelSelector
from vidpipe_ml.cache import ModelCache, ModelUnavailable, RegistryUnavailable
from vidpipe_ml.inference import LoadedModel

ALIAS = ModelSelector(name="det", alias="production")


@dataclass
class Version:
    version: str


class FakeRegistry:
    """``get_model_version_by_alias`` answering ``version``, or raising ``error``."""

    def __init__(self, version: str = "1") -> None:
        self.version = version
        self.error: Exception | None = None
        self.calls = 0

    def get_model_version_by_alias(self, name: str, alias: str) -> Version:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return Version(self.version)


class Loads:
    """Instant loads of a tiny module, recorded; a version in ``gated`` waits for ``gate``."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.gated: set[str] = set()
        self.gate = threading.Event()

    def __call__(self, ref: ModelRef) -> LoadedModel:
        if ref.version in self.gated:
            assert self.gate.wait(5)
        self.loaded.append(ref.version)
        return LoadedModel(ref, torch.nn.Identity(), ("__background__", "person"))


def make(refresh_s: float = 60.0, **kwargs: float) -> tuple[ModelCache, FakeRegistry, Loads]:
    stale: list[str] = []
    cache = ModelCache(
        "http://127.0.0.1:1",
        torch.device("cpu"),
        alias_refresh_s=refresh_s,
        on_stale=stale.append,
        **kwargs,  # type: ignore[arg-type]
    )
    registry, loads = FakeRegistry(), Loads()
    cache._client = registry  # type: ignore[assignment]
    cache._load = loads  # type: ignore[method-assign]
    cache.stale = stale  # type: ignore[attr-defined]
    return cache, registry, loads


async def serve(cache: ModelCache, selector: ModelSelector = ALIAS) -> str:
    """Acquire and release once; the version that served."""
    model = await cache.acquire(selector)
    cache.release(model)
    return model.ref.version


async def served_soon(cache: ModelCache, version: str, selector: ModelSelector = ALIAS) -> bool:
    """Whether ``version`` serves ``selector`` within 1 s of serving (the background
    resolution, then the background load)."""
    for _ in range(100):
        if await serve(cache, selector) == version:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_acquire_when_resolution_fresh_then_registry_not_asked_again() -> None:
    cache, registry, _ = make(refresh_s=60)
    assert [await serve(cache) for _ in range(5)] == ["1"] * 5
    assert registry.calls == 1


async def test_acquire_when_registry_down_after_resolution_then_last_version_serves() -> None:
    # given a resolved alias whose resolution has expired
    cache, registry, _ = make(refresh_s=0.01, failure_ttl_s=0.01)
    assert await serve(cache) == "1"
    registry.error = MlflowException("API request failed: Connection refused")
    await asyncio.sleep(0.02)
    # when the registry fails / then the loaded version goes on serving, counted as stale
    assert [await serve(cache) for _ in range(3)] == ["1"] * 3
    await asyncio.sleep(0.05)
    assert "model" in cache.stale  # type: ignore[attr-defined]
    # and once it is back, resolution resumes
    registry.error, registry.version = None, "2"
    assert await served_soon(cache, "2")


async def test_acquire_when_registry_hangs_then_no_wait_and_stale_after_timeout() -> None:
    cache, registry, _ = make(refresh_s=0.01, registry_timeout_s=0.2)
    assert await serve(cache) == "1"
    frozen = threading.Event()
    registry.get_model_version_by_alias = lambda *_: frozen.wait(5)  # type: ignore[method-assign,assignment]
    await asyncio.sleep(0.02)
    try:
        assert await asyncio.wait_for(serve(cache), 0.1) == "1"  # does not wait
        await asyncio.sleep(0.3)
        assert await asyncio.wait_for(serve(cache), 0.1) == "1"
        assert cache.stale == ["model"]  # type: ignore[attr-defined]
    finally:
        frozen.set()


async def test_acquire_when_registry_down_and_nothing_resolved_then_transient() -> None:
    cache, registry, _ = make()
    registry.error = MlflowException("API request failed: Connection refused")
    with pytest.raises(RegistryUnavailable) as caught:
        await cache.acquire(ALIAS)
    assert classify(caught.value) == "transient"


async def test_acquire_when_alias_missing_then_model_unavailable_not_transient() -> None:
    cache, registry, _ = make()
    registry.error = MlflowException("no alias", error_code=RESOURCE_DOES_NOT_EXIST)
    with pytest.raises(ModelUnavailable) as caught:
        await cache.acquire(ALIAS)
    assert classify(caught.value) == "unexpected" and not isinstance(
        caught.value, RegistryUnavailable
    )


async def test_acquire_when_alias_moved_then_old_serves_while_new_loads() -> None:
    # given version 1 serving and the alias moved to 2, whose load is slow
    cache, registry, loads = make(refresh_s=0.01)
    assert await serve(cache) == "1"
    registry.version = "2"
    loads.gated.add("2")
    await asyncio.sleep(0.02)
    # when frames come meanwhile / then 1 serves them without waiting
    for _ in range(10):
        assert await asyncio.wait_for(serve(cache), 1) == "1"
        await asyncio.sleep(0.01)
    loads.gate.set()
    assert await served_soon(cache, "2")


async def test_acquire_when_alias_moved_then_old_version_unloaded_once_released() -> None:
    cache, registry, _ = make(refresh_s=0.01)
    held = await cache.acquire(ALIAS)  # a batch still uses version 1
    registry.version = "2"
    await asyncio.sleep(0.02)
    assert await served_soon(cache, "2")
    assert [r.version for r in cache.loaded] == ["1", "2"]  # 1 is still held
    cache.release(held)
    assert [r.version for r in cache.loaded] == ["2"]


async def test_acquire_when_alias_moves_back_and_forth_then_one_version_loaded() -> None:
    cache, registry, _ = make(refresh_s=0.001)
    for move in range(6):
        registry.version = str(1 + move % 2)
        assert await served_soon(cache, registry.version)
        assert [r.version for r in cache.loaded] == [registry.version]


async def test_acquire_when_two_references_then_a_pinned_version_stays_loaded() -> None:
    cache, registry, _ = make(refresh_s=0.01)
    pinned = ModelSelector(name="det", version="1")
    assert await serve(cache, pinned) == "1"
    assert await serve(cache) == "1"
    registry.version = "2"
    assert await served_soon(cache, "2")
    assert sorted(r.version for r in cache.loaded) == ["1", "2"]


def test_get_when_more_versions_than_max_then_least_recently_used_evicted() -> None:
    cache, _, _ = make(max_models=2)
    for version in ("1", "2", "1", "3"):
        cache.get(ModelRef(name="det", version=version))
    assert [r.version for r in cache.loaded] == ["1", "3"]
