"""The detector's on-demand requests with in-memory fakes: claim, run, store, publish; skip
interrupted ones; fail undecodable ones; and requests overtake waiting frame chunks."""

from __future__ import annotations

import asyncio
import json
import time

import torch

from services.detector.priority import InferenceGate
from services.detector.requests import RequestService
from tests.unit.detector.test_service import FakeModels, jpeg
from tests.unit.fakes import FakeProducer, FakeStore, record
from vidpipe import keys
from vidpipe.bus import DeadLetterPublisher
from vidpipe.events import DeadLetter, DetectionRequested, RequestProcessed, encode_event
from vidpipe.requests import RequestResult
from vidpipe.topics import REQUESTS, REQUESTS_DONE

REQUEST_ID = "0123456789abcdef0123456789abcdef"


class FakeLedger:
    """Request rows as a dict of states; records every transition."""

    def __init__(self, state: str = "created") -> None:
        self.state = state
        self.results: list[RequestResult] = []
        self.reasons: list[str] = []

    def claim(self, request_id: str) -> str | None:
        if self.state in ("created", "processing"):
            self.state = "processing"
            return None
        return self.state

    def processed(self, request_id: str, result: RequestResult) -> bool:
        if self.state != "processing":
            return False
        self.state = "processed"
        self.results.append(result)
        return True

    def failed(self, request_id: str, reason: str) -> bool:
        self.state = "failed"
        self.reasons.append(reason)
        return True


def request_event(threshold: float = 0.5, classes: tuple[str, ...] = ()) -> DetectionRequested:
    return DetectionRequested(
        request_id=REQUEST_ID,
        client_id="acme",
        image=keys.request_image("acme", REQUEST_ID),
        width=64,
        height=48,
        model_name="fixed",
        model_alias="production",
        score_threshold=threshold,
        classes=classes,
        created_ts_ns=time.time_ns(),
    )


def make(ledger: FakeLedger, store: FakeStore, producer: FakeProducer) -> RequestService:
    return RequestService(
        store,
        ledger,
        FakeModels(),
        producer,
        DeadLetterPublisher(producer, "detector"),
        torch.device("cpu"),
        InferenceGate(),
    )


async def test_request_when_created_then_processed_stored_and_published() -> None:
    store, producer, ledger = FakeStore(), FakeProducer(), FakeLedger()
    image = keys.request_image("acme", REQUEST_ID)
    store.objects[(image.bucket, image.key)] = jpeg()

    await make(ledger, store, producer).handle_batch(
        [record(REQUESTS, encode_event(request_event(threshold=0.5)))]
    )

    assert ledger.state == "processed"
    assert [d.label for d in ledger.results[0].detections] == ["person"]  # the dog is 0.2
    annotation = keys.request_annotation("acme", REQUEST_ID)
    doc = json.loads(store.objects[(annotation.bucket, annotation.key)])
    assert doc["request_id"] == REQUEST_ID and len(doc["detections"]) == 1
    done = RequestProcessed.model_validate_json(producer.on(REQUESTS_DONE)[0])
    assert done.request_id == REQUEST_ID and done.annotations == annotation


async def test_request_when_interrupted_before_processing_then_skipped() -> None:
    store, producer, ledger = FakeStore(), FakeProducer(), FakeLedger("interrupted")

    await make(ledger, store, producer).handle_batch(
        [record(REQUESTS, encode_event(request_event()))]
    )

    assert ledger.state == "interrupted" and not ledger.results
    assert producer.sent == [] and store.objects == {}


async def test_request_when_image_undecodable_then_failed_with_reason() -> None:
    store, producer, ledger = FakeStore(), FakeProducer(), FakeLedger()
    image = keys.request_image("acme", REQUEST_ID)
    store.objects[(image.bucket, image.key)] = b"not an image"

    await make(ledger, store, producer).handle_batch(
        [record(REQUESTS, encode_event(request_event()))]
    )

    assert ledger.state == "failed" and "undecodable" in ledger.reasons[0]
    assert producer.on(REQUESTS_DONE) == []


async def test_request_when_message_invalid_then_dead_lettered() -> None:
    store, producer, ledger = FakeStore(), FakeProducer(), FakeLedger()

    await make(ledger, store, producer).handle_batch([record(REQUESTS, b"{}")])

    letter = DeadLetter.model_validate_json(producer.on(f"{REQUESTS}.dlq")[0])
    assert letter.error_type == "invalid_event" and ledger.state == "created"


async def test_gate_when_request_arrives_while_frames_wait_then_request_runs_first() -> None:
    gate, order = InferenceGate(), []

    async def frames(name: str) -> None:
        async with gate.normal():
            order.append(name)
            await asyncio.sleep(0.01)

    async def request() -> None:
        async with gate.urgent():
            order.append("request")
            await asyncio.sleep(0.01)

    running = asyncio.create_task(frames("chunk-1"))
    await asyncio.sleep(0)  # chunk-1 holds the gate
    waiting = asyncio.create_task(frames("chunk-2"))
    await asyncio.sleep(0)
    urgent = asyncio.create_task(request())
    await asyncio.gather(running, waiting, urgent)

    assert order == ["chunk-1", "request", "chunk-2"]
