"""How the detector's batch meets failures (unit, fakes): bad model output and invalid
configs are dead-lettered frame by frame (a request with bad output is failed: its client
waits); unreachable dependencies raise for the runner to retry, never dead-letter; every
model acquired for a batch is released."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch

from services.detector.priority import InferenceGate
from services.detector.requests import RequestService
from tests.unit.detector.test_requests import REQUEST_ID, FakeLedger, request_event
from tests.unit.detector.test_service import (
    FakeModels,
    FixedBoxes,
    dead_letters,
    frame_event,
    jpeg,
    make_service,
    stored_frames,
)
from tests.unit.fakes import FakeProducer, FakeStore, record
from vidpipe import keys
from vidpipe.bus import DeadLetterPublisher
from vidpipe.configstore import ClientConfig, ConfigUnavailable, InvalidConfig
from vidpipe.events import DetectionsProduced, encode_event
from vidpipe.failures import classify
from vidpipe.modelref import ModelSelector
from vidpipe.topics import DETECTIONS, REQUESTS, REQUESTS_DONE
from vidpipe_ml.cache import RegistryUnavailable
from vidpipe_ml.inference import LoadedModel


class BadFor(torch.nn.Module):
    """FixedBoxes, except that the image of width ``width`` gets ``score``/``label``."""

    labels: ClassVar[list[str]] = FixedBoxes.labels

    def __init__(self, score: float, label: int) -> None:
        super().__init__()
        self.score, self.label, self.inner = score, label, FixedBoxes()

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = self.inner(images)
        out[1] = {
            "boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]),
            "scores": torch.tensor([self.score]),
            "labels": torch.tensor([self.label]),
        }
        return out


@pytest.mark.parametrize(
    ("score", "label", "why"),
    [(math.nan, 1, "NaN/inf score"), (math.inf, 1, "NaN/inf score"), (0.9, 91, "label id")],
)
async def test_handle_batch_when_model_output_invalid_then_that_frame_dead_lettered(
    score: float, label: int, why: str
) -> None:
    # given three frames; the model's output for the second is invalid
    store, producer = FakeStore(), FakeProducer()
    records = stored_frames(store, *(frame_event(i) for i in range(3)))
    service = make_service(store, producer, models=FakeModels(module=BadFor(score, label)))
    service._batch_size = 3
    # when
    await service.handle_batch(records)
    # then it alone is dead-lettered with the reason; the others are detected
    (letter,) = dead_letters(producer)
    assert (letter.offset, letter.error_type) == (1, "invalid_detections")
    assert why in letter.reason
    seqs = [DetectionsProduced.model_validate_json(v).frame_seq for v in producer.on(DETECTIONS)]
    assert sorted(seqs) == [0, 2]


class Configs:
    """A config source that fails with ``error`` for client ``bad``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def read_client_config(self, client_id: str) -> ClientConfig | None:
        if client_id == "bad":
            raise self.error
        return ClientConfig(client_id=client_id, model_name="fixed")


async def test_handle_batch_when_stored_config_invalid_then_its_frames_dead_lettered() -> None:
    store, producer = FakeStore(), FakeProducer()
    records = stored_frames(store, frame_event(0), frame_event(1, client_id="bad"))
    service = make_service(store, producer)
    service._configs = Configs(InvalidConfig("client 'bad': stored config invalid"))
    await service.handle_batch(records)
    (letter,) = dead_letters(producer)
    assert (letter.offset, letter.error_type) == (1, "invalid_config")
    assert len(producer.on(DETECTIONS)) == 1


async def test_handle_batch_when_config_unreachable_then_raises_transient_nothing_sent() -> None:
    store, producer = FakeStore(), FakeProducer()
    records = stored_frames(store, frame_event(0), frame_event(1, client_id="bad"))
    service = make_service(store, producer)
    service._configs = Configs(ConfigUnavailable("Redis and Postgres unreachable"))
    with pytest.raises(ConfigUnavailable) as caught:
        await service.handle_batch(records)
    assert classify(caught.value) == "transient"
    assert producer.sent == []


class Unreachable(FakeModels):
    async def acquire(self, selector: ModelSelector) -> LoadedModel:
        raise RegistryUnavailable(f"{selector.uri}: registry unreachable (Connection refused)")


async def test_handle_batch_when_registry_unreachable_and_nothing_loaded_then_raises() -> None:
    # the old detector dead-lettered these frames as model_unavailable
    store, producer = FakeStore(), FakeProducer()
    records = stored_frames(store, frame_event(0))
    service = make_service(store, producer, models=Unreachable())
    with pytest.raises(RegistryUnavailable):
        await service.handle_batch(records)
    assert dead_letters(producer) == []


async def test_handle_batch_when_done_or_failed_then_every_model_released() -> None:
    store, producer = FakeStore(), FakeProducer()
    models = FakeModels()
    service = make_service(store, producer, models=models)
    await service.handle_batch(stored_frames(store, frame_event(0), frame_event(1)))
    assert models.held == 0

    class S3Down(FakeStore):
        async def aget(self, bucket: str, key: str) -> bytes:
            raise ConnectionRefusedError("s3 unreachable")

    service._store = S3Down()
    with pytest.raises(ConnectionRefusedError):
        await service.handle_batch(stored_frames(store, frame_event(2)))
    assert models.held == 0 and dead_letters(producer) == []


class NaNScores(torch.nn.Module):
    labels: ClassVar[list[str]] = FixedBoxes.labels

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [
            {
                "boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]),
                "scores": torch.tensor([math.nan]),
                "labels": torch.tensor([1]),
            }
            for _ in images
        ]


async def test_request_when_model_output_invalid_then_request_failed_with_reason() -> None:
    # given a request whose model answers a NaN score
    store, producer, ledger = FakeStore(), FakeProducer(), FakeLedger()
    image = keys.request_image("acme", REQUEST_ID)
    store.objects[(image.bucket, image.key)] = jpeg()
    models = FakeModels(module=NaNScores())
    service = RequestService(
        store, ledger, models, producer, DeadLetterPublisher(producer, "detector"),
        torch.device("cpu"), InferenceGate(),
    )  # fmt: skip
    # when
    await service.handle_batch([record(REQUESTS, encode_event(request_event()))])
    # then the waiting client gets a failed request with the reason; the model is released
    assert ledger.state == "failed" and "NaN" in ledger.reasons[0]
    assert models.held == 0 and producer.on(REQUESTS_DONE) == []
