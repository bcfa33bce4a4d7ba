"""Bounded model memory against the real MLflow registry: an alias moved 20 times between
two versions leaves one version loaded and the process's resident memory flat."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest
import torch
from mlflow import MlflowClient

from vidpipe.modelref import ModelSelector
from vidpipe.settings import ServiceSettings
from vidpipe_ml.cache import ModelCache

pytestmark = pytest.mark.integration

MOVES = 20


@pytest.fixture
def two_versions(settings: ServiceSettings, model_version: str) -> Iterator[tuple[str, str, str]]:
    """A registered model of its own with two versions, both on the artifacts of
    coco-centernet@production (registered without uploading anything); deleted after."""
    uri = settings.mlflow.tracking_uri
    client = MlflowClient(uri, uri)
    source = client.get_model_version("coco-centernet", model_version)
    name = f"it-detres-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    # MLflow 3 stores a version's artifacts as a logged model, source models:/<model id>
    origin = str(source.source)
    model_id = origin.removeprefix("models:/") if origin.startswith("models:/m-") else None
    versions = [
        client.create_model_version(name, origin, run_id=source.run_id, model_id=model_id).version
        for _ in range(2)
    ]
    yield name, str(versions[0]), str(versions[1])
    client.delete_registered_model(name)


def test_model_cache_when_alias_moves_20_times_then_one_version_loaded_and_rss_flat(
    settings: ServiceSettings, two_versions: tuple[str, str, str]
) -> None:
    name, first, second = two_versions
    uri = settings.mlflow.tracking_uri
    registry = MlflowClient(uri, uri)
    cache = ModelCache(uri, torch.device("cpu"), alias_refresh_s=0.2, backend="torch")
    selector = ModelSelector(name=name, alias="moving")
    rss_mb: list[float] = []

    async def move_and_serve() -> None:
        for move in range(MOVES):
            version = (first, second)[move % 2]
            registry.set_registered_model_alias(name, "moving", version)
            deadline = time.monotonic() + 120
            while True:  # frames keep coming until the new version serves
                model = await cache.acquire(selector)
                cache.release(model)
                if model.ref.version == version:
                    break
                assert time.monotonic() < deadline, f"version {version} never served"
                await asyncio.sleep(0.1)
            # the version the alias left is unloaded: nothing uses it any more
            assert [ref.version for ref in cache.loaded] == [version]
            rss_mb.append(psutil.Process().memory_info().rss / 2**20)

    try:
        asyncio.run(move_and_serve())
    finally:
        cache.close()
    print(f"RSS after each move (MiB): {[round(r) for r in rss_mb]}")
    assert rss_mb[-1] <= rss_mb[1] * 1.10, (
        f"RSS grew from {rss_mb[1]:.0f} MiB after the 2nd move "
        f"to {rss_mb[-1]:.0f} MiB after the {MOVES}th"
    )
