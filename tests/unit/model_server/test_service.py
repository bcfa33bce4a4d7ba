"""The model server's request handling with a fake model cache and a tiny splittable model:
versions and aliases, the core's outputs, and failures as KServe errors (gRPC codes)."""

from __future__ import annotations

import pytest
import torch
from kserve import InferInput, InferRequest
from kserve.errors import InvalidInput, ModelNotReady

from services.model_server.service import RegistryModel, selector_of
from services.model_server.settings import ModelServerSettings
from vidpipe.events import ModelRef
from vidpipe.modelref import ModelSelector
from vidpipe_ml.backends import Splittable
from vidpipe_ml.cache import ModelUnavailable
from vidpipe_ml.inference import LoadedModel
from vidpipe_ml.oip import decode_response, encode_request


class Doubling(torch.nn.Module):
    """Splittable: ``core`` doubles the batch and sums it per image."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))
        self.labels = ["person"]

    @property
    def core(self) -> torch.nn.Module:
        scale = self.scale

        class Core(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                doubled = x * scale
                return doubled, doubled.flatten(1).sum(1)

        return Core()

    def prepare(self, images: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(images)

    def finish(
        self, outputs: tuple[torch.Tensor, ...], images: list[torch.Tensor]
    ) -> list[dict[str, torch.Tensor]]:
        return []


class FakeCache:
    """Versions 1 and 2 of ``det``; alias ``production`` -> 2, ``broken`` -> unavailable."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.resolved: list[ModelSelector] = []

    def resolve(self, selector: ModelSelector) -> ModelRef:
        self.resolved.append(selector)
        if selector.alias == "broken":
            raise ModelUnavailable("models:/det@broken: registry unreachable")
        return ModelRef(name=selector.name, version=selector.version or "2")

    def get(self, ref: ModelRef) -> LoadedModel:
        return LoadedModel(ref, self.module, ("person",))


def model(module: torch.nn.Module | None = None) -> tuple[RegistryModel, FakeCache]:
    cache = FakeCache(module or Doubling())
    return RegistryModel("det", cache, "production"), cache


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("", ModelSelector(name="det", alias="production")),
        ("7", ModelSelector(name="det", version="7")),
        ("staging", ModelSelector(name="det", alias="staging")),
    ],
)
def test_selector_of_when_version_alias_or_nothing_then_registry_selector(
    version: str, expected: ModelSelector
) -> None:
    assert selector_of("det", version, "production") == expected


def test_selector_of_when_malformed_then_value_error() -> None:
    with pytest.raises(ValueError):
        selector_of("det", "no/such", "production")


async def test_predict_when_alias_then_resolved_here_and_version_answered() -> None:
    served, cache = model()
    pixels = torch.ones(2, 3, 4, 4)
    response = await served.predict(encode_request("det", "", pixels))
    doubled, sums = decode_response(response)
    assert torch.equal(doubled, pixels * 2) and sums.tolist() == [96.0, 96.0]
    assert response.model_version == "2"  # the concrete version that ran
    assert cache.resolved == [ModelSelector(name="det", alias="production")]


async def test_predict_when_version_then_that_version() -> None:
    served, cache = model()
    response = await served.predict(encode_request("det", "1", torch.ones(1, 3, 2, 2)))
    assert response.model_version == "1"
    assert cache.resolved == [ModelSelector(name="det", version="1")]


async def test_predict_when_registry_cannot_serve_then_model_not_ready() -> None:
    served, _ = model()
    with pytest.raises(ModelNotReady):  # gRPC UNAVAILABLE: the detector retries
        await served.predict(encode_request("det", "broken", torch.ones(1, 3, 2, 2)))


async def test_predict_when_bad_tensor_then_invalid_input() -> None:
    served, _ = model()
    wrong = InferInput("pixels", [1, 3], "FP32")
    wrong.set_data_from_numpy(torch.ones(1, 3).numpy())
    with pytest.raises(InvalidInput):  # gRPC INVALID_ARGUMENT: dead-lettered, not retried
        await served.predict(InferRequest(model_name="det", infer_inputs=[wrong]))


async def test_predict_when_model_does_not_split_then_invalid_input() -> None:
    served, _ = model(torch.nn.Linear(2, 2))
    assert not isinstance(torch.nn.Linear(2, 2), Splittable)
    with pytest.raises(InvalidInput, match="core"):
        await served.predict(encode_request("det", "1", torch.ones(1, 3, 2, 2)))


def test_settings_when_defaults_then_ports_of_the_manifests() -> None:
    settings = ModelServerSettings()
    assert (settings.grpc_port, settings.metrics_port) == (8081, 9107)
