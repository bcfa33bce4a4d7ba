"""DetectorService with in-memory fakes and a tiny deterministic model."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable
from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch

from services.detector.service import DetectorService
from tests.unit.fakes import SESSION, FakeProducer, FakeStore, record
from vidpipe import keys
from vidpipe.bus import DeadLetterPublisher
from vidpipe.configstore import ClientConfig
from vidpipe.events import (
    DeadLetter,
    DetectionsProduced,
    FrameDecoded,
    FrameMetrics,
    ModelRef,
    ObjectRef,
    encode_event,
)
from vidpipe.modelref import ModelSelector
from vidpipe.topics import DETECTIONS, FRAMES_DECODED, METRICS
from vidpipe_ml.cache import ModelUnavailable
from vidpipe_ml.inference import InferenceFailed, LoadedModel

MODEL = ModelRef(name="fixed", version="1")


class FixedBoxes(torch.nn.Module):
    """Two detections per image: a person (0.9) in the top-left quarter, a dog (0.2)."""

    labels: ClassVar[list[str]] = ["__background__", "person", "dog"]

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = []
        for img in images:
            h, w = img.shape[1:]
            out.append(
                {
                    "boxes": torch.tensor([[0, 0, w / 2, h / 2], [1, 1, 5, 5]]),
                    "scores": torch.tensor([0.9, 0.2]),
                    "labels": torch.tensor([1, 2]),
                }
            )
        return out


class FakeConfigs:
    def __init__(self, configs: dict[str, ClientConfig]) -> None:
        self.configs = configs

    async def read_client_config(self, client_id: str) -> ClientConfig | None:
        return self.configs.get(client_id)


class RefusingServer(torch.nn.Module):
    """A model whose backend refuses every batch for good (a model server without it)."""

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        raise InferenceFailed("model server 10.0.0.9:8081 refused models:/fixed/1: NOT_FOUND")


class FakeModels:
    def __init__(self, available: bool = True, module: torch.nn.Module | None = None) -> None:
        self.available = available
        self.module = module or FixedBoxes()

        self.held = 0

    async def acquire(self, selector: ModelSelector) -> LoadedModel:
        if not self.available:
            raise ModelUnavailable(f"{selector.uri}: no such alias")
        self.held += 1
        return LoadedModel(ref=MODEL, module=self.module, labels=tuple(FixedBoxes.labels))

    def release(self, model: LoadedModel) -> None:
        self.held -= 1


def jpeg(width: int = 64, height: int = 48) -> bytes:
    image = np.full((height, width, 3), 128, np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def frame_event(
    seq: int, client_id: str = "acme", capture_ts_ns: int | None = None
) -> FrameDecoded:
    now = time.time_ns()
    return FrameDecoded(
        client_id=client_id,
        camera_id="cam-1",
        session_id=SESSION,
        frame_seq=seq,
        capture_ts_ns=capture_ts_ns or now,
        decoded_ts_ns=now,
        width=64,
        height=48,
        image=ObjectRef(bucket="frames", key=f"{client_id}/cam-1/{SESSION}/{seq}.jpg"),
    )


def make_service(
    store: FakeStore,
    producer: FakeProducer,
    threshold: float = 0.5,
    models: FakeModels | None = None,
    max_frame_age_ms: int | None = None,
    client_budget_ms: int | None = None,
) -> DetectorService:
    config = ClientConfig(
        client_id="acme",
        model_name="fixed",
        score_threshold=threshold,
        max_frame_age_ms=client_budget_ms,
    )
    return DetectorService(
        store=store,
        configs=FakeConfigs({"acme": config}),
        models=models or FakeModels(),
        producer=producer,
        dead_letters=DeadLetterPublisher(producer, "detector"),
        device=torch.device("cpu"),
        batch_size=2,
        max_frame_age_ms=max_frame_age_ms,
    )


def stored_frames(store: FakeStore, *events: FrameDecoded) -> list[object]:
    records = []
    for i, ev in enumerate(events):
        store.objects[(ev.image.bucket, ev.image.key)] = jpeg()
        records.append(record(FRAMES_DECODED, encode_event(ev), offset=i))
    return records


def dead_letters(producer: FakeProducer) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(v) for v in producer.on(FRAMES_DECODED + ".dlq")]


async def test_handle_batch_when_frames_valid_then_detections_annotations_and_metrics() -> None:
    # given three stored frames (more than one model batch)
    store, producer = FakeStore(), FakeProducer()
    records = stored_frames(store, *(frame_event(i) for i in range(3)))
    # when
    await make_service(store, producer).handle_batch(records)
    # then each frame has one detections event, filtered by the 0.5 threshold
    events = [DetectionsProduced.model_validate_json(v) for v in producer.on(DETECTIONS)]
    assert sorted(e.frame_seq for e in events) == [0, 1, 2]
    for event in events:
        assert [d.label for d in event.detections] == ["person"]
        assert event.detections[0].box == (0.0, 0.0, 32.0, 24.0)
        assert event.model == MODEL
        assert event.detected_ts_ns >= event.decoded_ts_ns
        annotation = json.loads(store.objects[("annotations", event.annotations.key)])
        assert annotation["frame_id"] == event.frame_id
        assert annotation["detections"][0]["label"] == "person"
    metrics = [FrameMetrics.model_validate_json(v) for v in producer.on(METRICS)]
    assert sorted(m.frame_seq for m in metrics) == [0, 1, 2]
    assert all(m.detections_by_label == {"person": 1} for m in metrics)
    assert dead_letters(producer) == []


async def test_handle_batch_when_threshold_low_then_more_detections() -> None:
    store, producer = FakeStore(), FakeProducer()
    records = stored_frames(store, frame_event(0))
    await make_service(store, producer, threshold=0.1).handle_batch(records)
    (event,) = [DetectionsProduced.model_validate_json(v) for v in producer.on(DETECTIONS)]
    assert [d.label for d in event.detections] == ["person", "dog"]


@pytest.mark.parametrize(
    ("breakage", "error_type"),
    [
        ("malformed", "invalid_event"),
        ("unknown_client", "unknown_client"),
        ("corrupt_jpeg", "undecodable_image"),
        ("missing_image", "missing_image"),
    ],
)
async def test_handle_batch_when_bad_input_then_dead_lettered_and_rest_detected(
    breakage: str, error_type: str
) -> None:
    # given one good frame and one bad message in the same batch
    store, producer = FakeStore(), FakeProducer()
    good = stored_frames(store, frame_event(0))
    bad_event = frame_event(1, client_id="nobody" if breakage == "unknown_client" else "acme")
    bad_value = b'{"frame_seq": "x"' if breakage == "malformed" else encode_event(bad_event)
    if breakage == "corrupt_jpeg":
        store.objects[("frames", bad_event.image.key)] = b"\xff\xd8 not really a jpeg"
    elif breakage == "unknown_client":
        store.objects[("frames", bad_event.image.key)] = jpeg()
    bad = record(FRAMES_DECODED, bad_value, offset=1)
    # when
    await make_service(store, producer).handle_batch([*good, bad])
    # then the bad one is a dead letter with reason and payload, the good one is detected
    (letter,) = dead_letters(producer)
    assert letter.error_type == error_type
    assert letter.offset == 1
    assert letter.payload == bad_value.decode()
    assert letter.reason
    assert [
        DetectionsProduced.model_validate_json(v).frame_seq for v in producer.on(DETECTIONS)
    ] == [0]


async def test_handle_batch_when_model_missing_then_dead_lettered() -> None:
    store, producer = FakeStore(), FakeProducer()
    records = stored_frames(store, frame_event(0))
    service = make_service(store, producer, models=FakeModels(available=False))
    await service.handle_batch(records)
    (letter,) = dead_letters(producer)
    assert letter.error_type == "model_unavailable"
    assert "models:/fixed@production" in letter.reason
    assert producer.on(DETECTIONS) == []


async def test_handle_batch_when_backend_refuses_batch_then_frames_dead_lettered() -> None:
    # given a backend that refuses for good (not a transient outage: that is retried)
    store, producer = FakeStore(), FakeProducer()
    records = stored_frames(store, frame_event(0), frame_event(1))
    service = make_service(store, producer, models=FakeModels(module=RefusingServer()))
    # when a batch arrives
    await service.handle_batch(records)
    # then each frame is dead-lettered with the server's reason, nothing is published
    letters = dead_letters(producer)
    assert [letter.error_type for letter in letters] == ["inference_failed"] * 2
    assert "NOT_FOUND" in letters[0].reason
    assert producer.on(DETECTIONS) == []
    assert store.objects.keys() == {
        (r.image.bucket, r.image.key) for r in (frame_event(0), frame_event(1))
    }


async def test_handle_batch_when_frame_over_age_budget_then_dropped_and_counted() -> None:
    store, producer = FakeStore(), FakeProducer()
    old = frame_event(0, capture_ts_ns=time.time_ns() - 10_000_000_000)
    records = stored_frames(store, old, frame_event(1))
    await make_service(store, producer, max_frame_age_ms=1000).handle_batch(records)
    assert [
        DetectionsProduced.model_validate_json(v).frame_seq for v in producer.on(DETECTIONS)
    ] == [1]
    metrics = {m.frame_seq: m for m in map(FrameMetrics.model_validate_json, producer.on(METRICS))}
    assert metrics[0].dropped and "over the 1000 ms budget" in (metrics[0].drop_reason or "")
    assert not metrics[1].dropped


async def test_handle_batch_when_client_sets_its_own_budget_then_it_wins() -> None:
    # given frames 3 s old, a service default of 2 s and a client budget of 5 s
    store, producer = FakeStore(), FakeProducer()
    aged = [frame_event(i, capture_ts_ns=time.time_ns() - 3_000_000_000) for i in range(2)]
    service = make_service(store, producer, max_frame_age_ms=2000, client_budget_ms=5000)
    # when handled / then nothing is dropped
    await service.handle_batch(stored_frames(store, *aged))
    assert len(producer.on(DETECTIONS)) == 2


class SlowModel(torch.nn.Module):
    """FixedBoxes after ``delay_s`` of (pretend) inference."""

    labels: ClassVar[list[str]] = FixedBoxes.labels

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s, self.inner = delay_s, FixedBoxes()

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        time.sleep(self.delay_s)
        return self.inner(images)


class SlowModels(FakeModels):
    def __init__(self) -> None:
        super().__init__(module=SlowModel(0.3))


async def test_handle_batch_when_frames_age_during_earlier_chunks_then_later_ones_dropped() -> None:
    # given four frames 150 ms old, a 400 ms budget and a model taking 300 ms per chunk of 2
    store, producer = FakeStore(), FakeProducer()
    young = [frame_event(i, capture_ts_ns=time.time_ns() - 150_000_000) for i in range(4)]
    service = make_service(store, producer, models=SlowModels(), max_frame_age_ms=400)
    # when handled / then the first chunk runs, the second has aged past the budget
    await service.handle_batch(stored_frames(store, *young))
    detected = sorted(
        DetectionsProduced.model_validate_json(v).frame_seq for v in producer.on(DETECTIONS)
    )
    metrics = [FrameMetrics.model_validate_json(v) for v in producer.on(METRICS)]
    assert detected == [0, 1]
    assert sorted(m.frame_seq for m in metrics if m.dropped) == [2, 3]


async def test_handle_batch_when_chunk_would_finish_past_budget_then_dropped_before_running() -> (
    None
):
    # given four frames 100 ms old, a 500 ms budget and a model taking 150 ms per image
    store, producer = FakeStore(), FakeProducer()
    young = [frame_event(i, capture_ts_ns=time.time_ns() - 100_000_000) for i in range(4)]
    service = make_service(store, producer, models=SlowModels(), max_frame_age_ms=500)
    # when handled: the first chunk ends at ~400 ms of age; the second would end at ~700 ms
    await service.handle_batch(stored_frames(store, *young))
    # then the second chunk is dropped before the model runs on it (it could only be late)
    detections = [DetectionsProduced.model_validate_json(v) for v in producer.on(DETECTIONS)]
    assert sorted(d.frame_seq for d in detections) == [0, 1]
    assert all(d.detected_ts_ns - d.capture_ts_ns <= 550_000_000 for d in detections)
    metrics = [FrameMetrics.model_validate_json(v) for v in producer.on(METRICS)]
    assert sorted(m.frame_seq for m in metrics if m.dropped) == [2, 3]


async def test_handle_batch_when_only_some_fit_then_newest_kept_older_dropped() -> None:
    # given a model measured at 100 ms per image, a 500 ms budget, frames 350 and 50 ms old
    store, producer = FakeStore(), FakeProducer()
    now = time.time_ns()
    frames = [frame_event(0, capture_ts_ns=now - 350_000_000), frame_event(1, capture_ts_ns=now)]
    service = make_service(store, producer, max_frame_age_ms=500)
    service._per_image_s[MODEL] = deque([0.1])
    # when handled: both in one chunk would end at ~550 ms for the older; the newer alone fits
    await service.handle_batch(stored_frames(store, *frames))
    # then the newest frame is analysed and the older one dropped before the model runs
    detected = [
        DetectionsProduced.model_validate_json(v).frame_seq for v in producer.on(DETECTIONS)
    ]
    dropped = [m for m in map(FrameMetrics.model_validate_json, producer.on(METRICS)) if m.dropped]
    assert detected == [1]
    assert [m.frame_seq for m in dropped] == [0] and "budget" in (dropped[0].drop_reason or "")


async def test_handle_batch_when_backlogged_then_newest_frames_first_older_superseded() -> None:
    # given five frames of one camera, 1.5 s old (past half a 2 s budget), batch size 2
    store, producer = FakeStore(), FakeProducer()
    now = time.time_ns()
    aged = [frame_event(i, capture_ts_ns=now - 1_500_000_000 + i * 1000) for i in range(5)]
    service = make_service(store, producer, max_frame_age_ms=2000)
    # when handled / then the newest two are analysed, the three older dropped as superseded
    await service.handle_batch(stored_frames(store, *aged))
    detected = sorted(
        DetectionsProduced.model_validate_json(v).frame_seq for v in producer.on(DETECTIONS)
    )
    dropped = [m for m in map(FrameMetrics.model_validate_json, producer.on(METRICS)) if m.dropped]
    assert detected == [3, 4]
    assert sorted(m.frame_seq for m in dropped) == [0, 1, 2]
    assert all("superseded" in (m.drop_reason or "") for m in dropped)


async def test_handle_batch_when_backlog_is_young_then_nothing_superseded() -> None:
    store, producer = FakeStore(), FakeProducer()
    young = [frame_event(i) for i in range(5)]
    await make_service(store, producer, max_frame_age_ms=2000).handle_batch(
        stored_frames(store, *young)
    )
    assert len(producer.on(DETECTIONS)) == 5


class RecordingPointer:
    """Records what the detector advances, and whether each frame's annotation was already
    stored at that moment."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.advanced: list[tuple[int, bool]] = []

    async def advance(self, frames: Iterable[FrameDecoded]) -> None:
        for f in frames:
            stored = ("annotations", keys.annotation(f).key)
            self.advanced.append((f.frame_seq, stored in self.store.objects))


async def test_handle_batch_when_detected_then_latest_pointer_advanced_after_annotations() -> None:
    # given three stored frames and a pointer
    store, producer = FakeStore(), FakeProducer()
    pointer = RecordingPointer(store)
    service = make_service(store, producer)
    service._latest = pointer
    # when
    await service.handle_batch(stored_frames(store, *(frame_event(i) for i in range(3))))
    # then every detected frame was offered to the pointer, each once its annotation existed
    assert sorted(pointer.advanced) == [(0, True), (1, True), (2, True)]
