"""On-demand requests in the detector: one batch of ``DetectionRequested`` messages.

Priority over camera frames, and why this way: requests have their own topic
(``requests.v1``) and their own consumer group (``detector-requests``) polled by its own
loop in the detector process, so a request is fetched as soon as it is published, never
behind a camera's backlog in a shared partition or a full poll of frames; and its model
call goes through the :class:`~services.detector.priority.InferenceGate` ahead of every
waiting frame chunk, so it waits at most for the one chunk already running. Frames that
wait meanwhile age, and the frame-age budget drops the stale ones, as for any overload.
Ordering messages of one topic could not give this: Kafka has no priorities within a
topic, and a detector replica busy with frames would not poll.

For each request: mark it ``processing`` in Postgres (a request already interrupted or
ended is skipped: counted, nothing else), fetch and decode the image, run the requested
model, keep the detections at or above the threshold in the wanted classes, store the
annotation JSON, mark it ``processed`` with the result, publish ``RequestProcessed`` for the
renderer. An image that cannot be decoded or a model that cannot be loaded ends the request
``failed`` with the reason (the client is waiting for an answer, so a dead letter alone would
leave it hanging); a message that is not a valid event is dead-lettered. A redelivered
request that is still ``processing`` (the detector died mid-way) runs again: its effects are
keyed by request id, so they are overwritten.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
import torch
from aiokafka import ConsumerRecord
from prometheus_client import Counter, Histogram

from services.detector.filters import apply_client_config
from services.detector.priority import InferenceGate
from services.detector.service import FrameStore, Models, Producer
from vidpipe import keys, requests
from vidpipe.bus import DeadLetterPublisher, Rejected
from vidpipe.configstore import ClientConfig
from vidpipe.events import (
    Detection,
    DetectionRequested,
    InvalidEvent,
    ModelRef,
    RequestProcessed,
    encode_event,
    parse_event,
)
from vidpipe.failures import classify
from vidpipe.modelref import ModelSelector
from vidpipe.objectstore import ObjectNotFound
from vidpipe.topics import REQUESTS_DONE
from vidpipe_ml.cache import ModelUnavailable
from vidpipe_ml.inference import (
    InvalidDetections,
    LoadedModel,
    UndecodableImage,
    decode_frame,
    detect_each,
)

log = logging.getLogger(__name__)

REQUESTS_HANDLED = Counter(
    "vidpipe_detector_requests_total", "On-demand requests handled", ["outcome"]
)
REQUEST_SECONDS = Histogram(
    "vidpipe_detector_request_seconds",
    "Request created to processed (s)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


class RequestLedger(Protocol):
    """The request rows (:mod:`vidpipe.requests`), blocking calls."""

    def claim(self, request_id: str) -> str | None: ...
    def processed(self, request_id: str, result: requests.RequestResult) -> bool: ...
    def failed(self, request_id: str, reason: str) -> bool: ...


class PostgresLedger:
    """:class:`RequestLedger` on Postgres."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def claim(self, request_id: str) -> str | None:
        """None when the request is to be run now; else the state that makes it skipped."""
        with self._engine.connect() as conn:
            if requests.mark_processing(conn, request_id):
                return None
            record = requests.get_request(conn, request_id)
        if record is None:
            return "unknown"
        return None if record.state == "processing" else record.state

    def processed(self, request_id: str, result: requests.RequestResult) -> bool:
        with self._engine.connect() as conn:
            return requests.mark_processed(conn, request_id, result)

    def failed(self, request_id: str, reason: str) -> bool:
        with self._engine.connect() as conn:
            return requests.mark_failed(conn, request_id, reason)


@dataclass
class _Request:
    record: ConsumerRecord[bytes, bytes]
    event: DetectionRequested
    model: LoadedModel
    image: torch.Tensor


class RequestService:
    """Handles batches of ``requests.v1`` (see the module doc)."""

    def __init__(
        self,
        store: FrameStore,
        ledger: RequestLedger,
        models: Models,
        producer: Producer,
        dead_letters: DeadLetterPublisher,
        device: torch.device,
        gate: InferenceGate,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._models = models
        self._producer = producer
        self._dead_letters = dead_letters
        self._device = device
        self._gate = gate

    async def handle_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Handle ``records``; a transient error (registry, S3, Postgres unreachable) is
        raised for the runner to retry the batch."""
        rejected: list[Rejected] = []
        prepared = await asyncio.gather(
            *(self._prepare(rec, rejected) for rec in records), return_exceptions=True
        )
        ready = [r for r in prepared if isinstance(r, _Request)]
        try:
            failure = next((r for r in prepared if isinstance(r, BaseException)), None)
            if failure is not None:
                raise failure
            by_model: dict[ModelRef, list[_Request]] = {}
            for r in ready:
                by_model.setdefault(r.model.ref, []).append(r)
            sends: list[Awaitable[Any]] = []
            for items in by_model.values():
                sends += await self._detect(items)
            await self._dead_letters.publish(rejected)
            await asyncio.gather(*sends)
        finally:
            for r in ready:
                self._models.release(r.model)

    async def _prepare(
        self, rec: ConsumerRecord[bytes, bytes], rejected: list[Rejected]
    ) -> _Request | None:
        """Validate, claim, load the model and the image; None when there is nothing to run."""
        try:
            event = parse_event(DetectionRequested, rec.value or b"")
        except InvalidEvent as exc:
            rejected.append(Rejected(rec, str(exc), "invalid_event"))
            return None
        skipped = await asyncio.to_thread(self._ledger.claim, event.request_id)
        if skipped is not None:
            REQUESTS_HANDLED.labels(f"skipped_{skipped}").inc()
            log.info(
                "request skipped: it is %s",
                skipped,
                extra={"request_id": event.request_id, "client_id": event.client_id},
            )
            return None
        selector = ModelSelector(
            name=event.model_name, alias=event.model_alias, version=event.model_version
        )
        try:
            model = await self._models.acquire(selector)
        except ModelUnavailable as exc:
            if classify(exc) == "transient":
                raise
            await self._fail(event, f"model {selector.uri} unavailable: {exc}", "model")
            return None
        try:
            data = await self._store.aget(event.image.bucket, event.image.key)
            image = await asyncio.to_thread(decode_frame, data)
        except BaseException as exc:
            self._models.release(model)
            if isinstance(exc, ObjectNotFound):
                await self._fail(event, "the stored image is missing", "missing_image")
                return None
            if isinstance(exc, UndecodableImage):
                await self._fail(event, str(exc), "undecodable")
                return None
            raise
        return _Request(rec, event, model, image)

    async def _fail(self, event: DetectionRequested, reason: str, outcome: str) -> None:
        REQUESTS_HANDLED.labels(f"failed_{outcome}").inc()
        log.warning(
            "request failed: %s",
            reason,
            extra={"request_id": event.request_id, "client_id": event.client_id},
        )
        await asyncio.to_thread(self._ledger.failed, event.request_id, reason)

    async def _detect(self, items: list[_Request]) -> list[Awaitable[Any]]:
        model = items[0].model
        async with self._gate.urgent():
            raw = await asyncio.to_thread(
                detect_each, model, [r.image for r in items], self._device
            )
        sends: list[Awaitable[Any]] = []
        for item, found in zip(items, raw, strict=True):
            if isinstance(found, InvalidDetections):  # the client waits: answer it
                await self._fail(item.event, str(found), "invalid_detections")
                continue
            send = await self._finish(item, _kept(item.event, found))
            if send is not None:
                sends.append(send)
        return sends

    async def _finish(self, item: _Request, detections: list[Detection]) -> Awaitable[Any] | None:
        """Store the annotation, mark processed, publish; None when the request ended
        meanwhile (interrupted: nothing is published)."""
        event, model = item.event, item.model
        annotation = keys.request_annotation(event.client_id, event.request_id)
        doc = _annotation_json(event, model, detections)
        await self._store.aput(annotation.bucket, annotation.key, doc, "application/json")
        result = requests.RequestResult(model=model.ref, detections=detections)
        if not await asyncio.to_thread(self._ledger.processed, event.request_id, result):
            REQUESTS_HANDLED.labels("ended_while_processing").inc()
            log.info("request ended while processing", extra={"request_id": event.request_id})
            return None
        processed_ns = time.time_ns()
        REQUESTS_HANDLED.labels("processed").inc()
        REQUEST_SECONDS.observe((processed_ns - event.created_ts_ns) / 1e9)
        done = RequestProcessed(
            request_id=event.request_id,
            client_id=event.client_id,
            image=event.image,
            annotations=annotation,
            width=event.width,
            height=event.height,
            model=model.ref,
            detections=tuple(detections),
            created_ts_ns=event.created_ts_ns,
            processed_ts_ns=processed_ns,
        )
        return await self._producer.send(
            REQUESTS_DONE, encode_event(done), key=event.request_id.encode()
        )


def _kept(event: DetectionRequested, detections: Sequence[Detection]) -> list[Detection]:
    """The request's threshold and classes applied (the same filter as a client's config)."""
    wanted = ClientConfig(
        client_id=event.client_id,
        model_name=event.model_name,
        model_alias=event.model_alias,
        model_version=event.model_version,
        score_threshold=event.score_threshold,
        classes_of_interest=event.classes,
    )
    return apply_client_config(detections, wanted)


def _annotation_json(
    event: DetectionRequested, model: LoadedModel, detections: Sequence[Detection]
) -> bytes:
    """The document at :func:`vidpipe.keys.request_annotation`."""
    doc = {
        "request_id": event.request_id,
        "client_id": event.client_id,
        "image": event.image.model_dump(),
        "width": event.width,
        "height": event.height,
        "model": model.ref.model_dump(),
        "detections": [d.model_dump() for d in detections],
    }
    return json.dumps(doc, separators=(",", ":")).encode()
