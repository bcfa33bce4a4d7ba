"""The detector's unit of work: one batch of ``FrameDecoded`` messages, across cameras.

For a batch: validate events, look up each client's config, drop frames over the age
budget, fetch JPEGs from S3 concurrently, run each model once on its frames (in chunks of
``batch_size``), filter per client, write annotation JSON, advance each camera's
latest-frame pointer (:mod:`vidpipe.latest`), publish ``DetectionsProduced``
and ``FrameMetrics``, and dead-letter what could not be handled. It returns only when all
of that is acknowledged, so the caller may commit the batch's offsets.

Failures (:mod:`vidpipe.failures`): a frame that is bad input (not a valid event, an
unknown client, a client whose stored config is invalid, a model that does not exist, a
missing or undecodable image, model output with NaN scores or unknown label ids) is
dead-lettered with its reason and the batch goes on. A dependency that is unreachable raises
out of the batch (transient), so the runner retries the whole batch while the consumer stays
in its group: never a dead letter for that. Configs and models serve stale meanwhile (the
last known config, the last resolved model version: ``vidpipe_detector_stale_total``), so an
outage of Redis, Postgres or MLflow alone does not stop detection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from aiokafka import ConsumerRecord
from prometheus_client import Counter, Histogram

from services.detector.filters import apply_client_config
from services.detector.priority import InferenceGate
from vidpipe import keys
from vidpipe.bus import DeadLetterPublisher, Rejected
from vidpipe.configstore import ClientConfig, InvalidConfig
from vidpipe.events import (
    Detection,
    DetectionsProduced,
    FrameDecoded,
    FrameMetrics,
    InvalidEvent,
    ModelRef,
    encode_event,
    parse_event,
)
from vidpipe.failures import classify
from vidpipe.modelref import ModelSelector
from vidpipe.objectstore import ObjectNotFound
from vidpipe.topics import DETECTIONS, METRICS
from vidpipe_ml.cache import ModelUnavailable
from vidpipe_ml.inference import (
    InferenceFailed,
    InvalidDetections,
    LoadedModel,
    UndecodableImage,
    decode_frame,
    detect_each,
)

log = logging.getLogger(__name__)

FRAMES = Counter("vidpipe_detector_frames_total", "Frames handled", ["outcome"])
STALE = Counter(
    "vidpipe_detector_stale_total",
    "Reads served from the last known value because a dependency failed (config: Redis and "
    "Postgres; model: the MLflow registry)",
    ["what"],
)
INFERENCE_SECONDS = Histogram(
    "vidpipe_detector_inference_seconds", "Model time per batch chunk", ["model"]
)
#: chunks of the model-time window the age budget predicts from
PER_IMAGE_WINDOW = 8
FRAME_AGE_SECONDS = Histogram(
    "vidpipe_detector_frame_age_seconds",
    "Capture to detections published",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)


class FrameStore(Protocol):
    async def aget(self, bucket: str, key: str) -> bytes: ...
    async def aput(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...


def count_stale(what: str) -> None:
    """Count one read served stale (``what``: config, model); the stores' ``on_stale``."""
    STALE.labels(what).inc()


class ConfigSource(Protocol):
    """:class:`vidpipe.configstore.ConfigStore`'s read: None for an unknown client; raises
    :class:`~vidpipe.configstore.InvalidConfig` or a transient error."""

    async def read_client_config(self, client_id: str) -> ClientConfig | None: ...


class Models(Protocol):
    """:class:`vidpipe_ml.cache.ModelCache`'s serving side: ``acquire`` raises
    :class:`~vidpipe_ml.cache.ModelUnavailable` (a transient subclass while the registry is
    away and nothing is loaded); each acquired model is released once."""

    async def acquire(self, selector: ModelSelector) -> LoadedModel: ...
    def release(self, model: LoadedModel) -> None: ...


class LatestPointer(Protocol):
    """Where the newest frame with detections of each camera is recorded
    (:class:`vidpipe.latest.LatestFrames`)."""

    async def advance(self, frames: Iterable[FrameDecoded]) -> None: ...


class Producer(Protocol):
    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Awaitable[Any]: ...


@dataclass
class _Work:
    record: ConsumerRecord[bytes, bytes]
    frame: FrameDecoded
    config: ClientConfig
    model: LoadedModel
    image: torch.Tensor | None = None


class DetectorService:
    def __init__(
        self,
        store: FrameStore,
        configs: ConfigSource,
        models: Models,
        producer: Producer,
        dead_letters: DeadLetterPublisher,
        device: torch.device,
        batch_size: int,
        fetch_concurrency: int = 16,
        max_frame_age_ms: int | None = None,
        latest: LatestPointer | None = None,
        gate: InferenceGate | None = None,
    ) -> None:
        self._store = store
        self._configs = configs
        self._models = models
        self._producer = producer
        self._dead_letters = dead_letters
        self._device = device
        self._batch_size = batch_size
        self._fetch_slots = asyncio.Semaphore(fetch_concurrency)
        self._max_age_ms = max_frame_age_ms
        #: seconds of model time per image of each model's last chunks (newest last)
        self._per_image_s: dict[ModelRef, deque[float]] = {}
        self._latest = latest
        #: shared with the on-demand requests, which go first
        self._gate = gate or InferenceGate()

    async def handle_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Handle ``records`` (see the module doc). Raises a transient error (Redis,
        Postgres, MLflow, S3 or Kafka unreachable) for the runner to retry the batch."""
        rejected: list[Rejected] = []
        pending: list[Awaitable[Any]] = []
        held: dict[ModelSelector, LoadedModel] = {}
        try:
            admitted = await self._admit(records, rejected, pending, held)
            work = self._newest_first(admitted, pending)
            await asyncio.gather(*(self._fetch(w, rejected) for w in work))
            ready = [w for w in work if w.image is not None]
            by_model: dict[ModelRef, list[_Work]] = {}
            for w in ready:
                by_model.setdefault(w.model.ref, []).append(w)
            for items in by_model.values():
                for start in range(0, len(items), self._batch_size):
                    # the budget again: earlier chunks took time, these frames aged meanwhile
                    chunk = self._within_budget(items[start : start + self._batch_size], pending)
                    if chunk:
                        pending += await self._detect_chunk(chunk, rejected)
            await self._dead_letters.publish(rejected)
            await asyncio.gather(*pending)
        except BaseException:
            for send in pending:  # never awaited now: close the coroutines quietly
                if asyncio.iscoroutine(send):
                    send.close()
            raise
        finally:
            for model in held.values():
                self._models.release(model)
        FRAMES.labels("dead_lettered").inc(len(rejected))

    async def _admit(
        self,
        records: Sequence[ConsumerRecord[bytes, bytes]],
        rejected: list[Rejected],
        pending: list[Awaitable[Any]],
        held: dict[ModelSelector, LoadedModel],
    ) -> list[_Work]:
        """Validate, look up each client's config and model once per batch, apply the age
        budget. Models acquired are added to ``held`` (the caller releases them)."""
        frames: list[tuple[ConsumerRecord[bytes, bytes], FrameDecoded]] = []
        for rec in records:
            try:
                frames.append((rec, parse_event(FrameDecoded, rec.value or b"")))
            except InvalidEvent as exc:
                rejected.append(Rejected(rec, str(exc), "invalid_event"))
        clients = sorted({frame.client_id for _, frame in frames})
        looked_up = await asyncio.gather(
            *(self._configs.read_client_config(c) for c in clients), return_exceptions=True
        )
        configs: dict[str, ClientConfig | BaseException | None] = dict(
            zip(clients, looked_up, strict=True)
        )
        for found in configs.values():
            if isinstance(found, BaseException) and not isinstance(found, InvalidConfig):
                raise found  # transient (or unexpected): the runner retries the batch
        models: dict[ModelSelector, LoadedModel | ModelUnavailable] = {}
        work: list[_Work] = []
        now = time.time_ns()
        for rec, frame in frames:
            config = configs[frame.client_id]
            if isinstance(config, BaseException):
                rejected.append(Rejected(rec, str(config), "invalid_config"))
                continue
            if config is None:
                reason = f"unknown client {frame.client_id!r}: no config"
                rejected.append(Rejected(rec, reason, "unknown_client"))
                continue
            if self._stale(frame, config, now, pending):
                continue
            model = models.get(config.model)
            if model is None:
                model = models[config.model] = await self._acquire(config.model, held)
            if isinstance(model, ModelUnavailable):
                rejected.append(Rejected(rec, f"model unavailable: {model}", "model_unavailable"))
                continue
            work.append(_Work(rec, frame, config, model))
        return work

    async def _acquire(
        self, selector: ModelSelector, held: dict[ModelSelector, LoadedModel]
    ) -> LoadedModel | ModelUnavailable:
        """The model serving ``selector`` (added to ``held``), or why it does not exist;
        a registry that cannot be reached (nothing loaded) raises, to be retried."""
        try:
            model = await self._models.acquire(selector)
        except ModelUnavailable as exc:
            if classify(exc) == "transient":
                raise
            return exc
        held[selector] = model
        return model

    def _newest_first(self, work: list[_Work], pending: list[Awaitable[Any]]) -> list[_Work]:
        """Under overload, analyse each camera's newest frames: of a camera's frames beyond
        its newest ``batch_size`` in this batch, those already past half their budget are
        dropped as superseded (counted and recorded). Serving the backlog in order would only
        let every frame wait until it is nearly stale; a detector that keeps up never holds
        more than a few frames of a camera, so it drops nothing here."""
        by_camera: dict[tuple[str, str], list[_Work]] = {}
        for w in work:
            by_camera.setdefault((w.frame.client_id, w.frame.camera_id), []).append(w)
        now = time.time_ns()
        kept: list[_Work] = []
        for frames in by_camera.values():
            frames.sort(key=lambda w: w.frame.capture_ts_ns)
            older, newest = frames[: -self._batch_size], frames[-self._batch_size :]
            for w in older:
                budget = self._budget_ms(w.config)
                age_ms = (now - w.frame.capture_ts_ns) / 1e6
                if budget is None or age_ms <= budget / 2:
                    kept.append(w)
                    continue
                FRAMES.labels("dropped_superseded").inc()
                reason = f"superseded by newer frames (age {age_ms:.0f} ms, budget {budget} ms)"
                pending.append(self._send_metrics(_frame_metrics(w.frame, drop_reason=reason)))
            kept += newest
        return kept

    def _budget_ms(self, config: ClientConfig) -> int | None:
        """The client's frame-age budget, else the service's (None: no budget)."""
        return config.max_frame_age_ms or self._max_age_ms

    def _within_budget(self, work: list[_Work], pending: list[Awaitable[Any]]) -> list[_Work]:
        """The newest frames of ``work`` that will still be within their budget when their
        detections are published; the others are dropped (counted and recorded).

        A chunk's detections are published together once the model has run on all of it, so
        a chunk of ``n`` frames ends ``n`` x the model's seconds per image from now, taken as
        the slowest of its last :data:`PER_IMAGE_WINDOW` chunks (on a shared CPU the time
        per image jumps; an average would let every slow spell overrun the budget). The
        largest ``n`` for which the ``n`` newest frames all end within budget is kept.
        Running a frame whose result will be stale anyway only makes the next frames late;
        with this check capture -> detections stays within the budget, also on a CPU slower
        than the camera.
        """
        if not work:
            return []
        now = time.time_ns()
        per_image_ns = int(max(self._per_image_s.get(work[0].model.ref, [0.0])) * 1e9)
        newest = sorted(work, key=lambda w: w.frame.capture_ts_ns, reverse=True)
        n = len(newest)
        while n and not all(
            self._fits(w.frame, w.config, now + per_image_ns * n) for w in newest[:n]
        ):
            n -= 1
        done_ns = now + per_image_ns * max(n, 1)
        for w in newest[n:]:
            self._drop_stale(w.frame, self._budget_ms(w.config) or 0, done_ns, pending)
        kept = {id(w) for w in newest[:n]}
        return [w for w in work if id(w) in kept]

    def _fits(self, frame: FrameDecoded, config: ClientConfig, at_ns: int) -> bool:
        """Whether ``frame`` is within its client's budget at ``at_ns`` (no budget: always)."""
        budget = self._budget_ms(config)
        return budget is None or (at_ns - frame.capture_ts_ns) / 1e6 <= budget

    def _drop_stale(
        self, frame: FrameDecoded, budget: int, at_ns: int, pending: list[Awaitable[Any]]
    ) -> None:
        """Count and record ``frame`` as dropped for its age at ``at_ns`` (its metrics send
        joins ``pending``)."""
        age_ms = (at_ns - frame.capture_ts_ns) / 1e6
        FRAMES.labels("dropped_too_old").inc()
        reason = f"frame age {age_ms:.0f} ms over the {budget} ms budget"
        pending.append(self._send_metrics(_frame_metrics(frame, drop_reason=reason)))

    def _stale(
        self,
        frame: FrameDecoded,
        config: ClientConfig,
        now: int,
        pending: list[Awaitable[Any]],
    ) -> bool:
        """Whether ``frame`` is older than its client's budget at ``now`` (ns); a stale frame
        is counted and recorded as ``dropped`` (its metrics send joins ``pending``)."""
        if self._fits(frame, config, now):
            return False
        self._drop_stale(frame, self._budget_ms(config) or 0, now, pending)
        return True

    async def _fetch(self, w: _Work, rejected: list[Rejected]) -> None:
        async with self._fetch_slots:
            try:
                data = await self._store.aget(w.frame.image.bucket, w.frame.image.key)
                w.image = await asyncio.to_thread(decode_frame, data)
            except ObjectNotFound as exc:
                rejected.append(Rejected(w.record, f"frame image missing: {exc}", "missing_image"))
            except UndecodableImage as exc:
                rejected.append(Rejected(w.record, str(exc), "undecodable_image"))

    async def _detect_chunk(
        self, items: list[_Work], rejected: list[Rejected]
    ) -> list[Awaitable[Any]]:
        """Detect ``items`` (one model), store and publish; a batch the backend refuses for
        good (:class:`InferenceFailed`) is dead-lettered frame by frame."""
        model = items[0].model
        images = [w.image for w in items if w.image is not None]
        async with self._gate.normal():
            started = time.perf_counter()
            try:
                found = await asyncio.to_thread(detect_each, model, images, self._device)
            except InferenceFailed as exc:
                rejected += [Rejected(w.record, str(exc), "inference_failed") for w in items]
                return []
            inference_s = time.perf_counter() - started
        per_image = inference_s / len(images)
        self._per_image_s.setdefault(model.ref, deque(maxlen=PER_IMAGE_WINDOW)).append(per_image)
        INFERENCE_SECONDS.labels(f"{model.ref.name}/{model.ref.version}").observe(inference_s)
        raw: list[list[Detection]] = []
        valid: list[_Work] = []
        for w, result in zip(items, found, strict=True):
            if isinstance(result, InvalidDetections):
                rejected.append(Rejected(w.record, str(result), result.error_type))
            else:
                raw.append(result)
                valid.append(w)
        items = valid
        if not items:
            return []
        detected = [apply_client_config(d, w.config) for d, w in zip(raw, items, strict=True)]
        annotations = [keys.annotation(w.frame) for w in items]
        await asyncio.gather(
            *(
                self._store.aput(
                    ref.bucket, ref.key, _annotation_json(w.frame, model.ref, d), "application/json"
                )
                for w, ref, d in zip(items, annotations, detected, strict=True)
            )
        )
        if self._latest is not None:
            await self._latest.advance(w.frame for w in items)
        sends: list[Awaitable[Any]] = []
        for w, ref, dets in zip(items, annotations, detected, strict=True):
            published_ns = time.time_ns()
            event = DetectionsProduced(
                client_id=w.frame.client_id,
                camera_id=w.frame.camera_id,
                session_id=w.frame.session_id,
                frame_seq=w.frame.frame_seq,
                image=w.frame.image,
                annotations=ref,
                width=w.frame.width,
                height=w.frame.height,
                model=model.ref,
                detections=tuple(dets),
                capture_ts_ns=w.frame.capture_ts_ns,
                decoded_ts_ns=w.frame.decoded_ts_ns,
                detected_ts_ns=published_ns,
            )
            key = w.frame.camera_id.encode()
            sends.append(await self._producer.send(DETECTIONS, encode_event(event), key=key))
            sends.append(
                self._send_metrics(
                    _frame_metrics(
                        w.frame,
                        detected=(model, dets, published_ns),
                        batch=(len(items), inference_s),
                    )
                )
            )
            FRAME_AGE_SECONDS.observe((published_ns - w.frame.capture_ts_ns) / 1e9)
        FRAMES.labels("detected").inc(len(items))
        return sends

    def _send_metrics(self, metrics: FrameMetrics) -> Awaitable[Any]:
        async def send() -> Any:
            fut = await self._producer.send(
                METRICS, encode_event(metrics), key=metrics.camera_id.encode()
            )
            return await fut

        return send()


def _frame_metrics(
    frame: FrameDecoded,
    *,
    detected: tuple[LoadedModel, Sequence[Detection], int] | None = None,
    batch: tuple[int, float] | None = None,
    drop_reason: str | None = None,
) -> FrameMetrics:
    """The detector's metrics of one frame: ``detected`` = (model, detections, detections
    published at, ns) and ``batch`` = (frames in the model call, its seconds) for a detected
    frame; ``drop_reason`` for a frame dropped before detection."""
    facts: dict[str, Any] = {}
    if detected is not None:
        model, detections, detected_ns = detected
        scores = [d.score for d in detections]
        facts = {
            "detected_ts_ns": detected_ns,
            "model": model.ref,
            "backend": str(model.backend),
            "detections_by_label": dict(Tally(d.label for d in detections)),
            "max_score": max(scores) if scores else None,
            "mean_score": round(sum(scores) / len(scores), 4) if scores else None,
        }
    if batch is not None:
        size, seconds = batch
        facts |= {"batch_size": size, "inference_ms": round(seconds * 1000 / size, 3)}
    if drop_reason is not None:
        facts |= {"dropped": True, "drop_reason": drop_reason}
    return FrameMetrics(
        client_id=frame.client_id,
        camera_id=frame.camera_id,
        session_id=frame.session_id,
        frame_seq=frame.frame_seq,
        stage="detector",
        capture_ts_ns=frame.capture_ts_ns,
        decoded_ts_ns=frame.decoded_ts_ns,
        **facts,
    )


def _annotation_json(
    frame: FrameDecoded, model: ModelRef, detections: Sequence[Detection]
) -> bytes:
    """The annotation document stored at :func:`vidpipe.keys.annotation` of the frame."""
    doc = {
        "frame_id": frame.frame_id,
        "client_id": frame.client_id,
        "camera_id": frame.camera_id,
        "session_id": frame.session_id,
        "frame_seq": frame.frame_seq,
        "image": frame.image.model_dump(),
        "width": frame.width,
        "height": frame.height,
        "capture_ts_ns": frame.capture_ts_ns,
        "model": model.model_dump(),
        "detections": [d.model_dump() for d in detections],
    }
    return json.dumps(doc, separators=(",", ":")).encode()
