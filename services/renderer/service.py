"""The renderer's unit of work: a batch of ``DetectionsProduced`` -> annotated JPEGs + clips.

Annotated frames and clips go where :mod:`vidpipe.keys` says. Clips cover a fixed span of
``clip_frames`` sequence numbers per stream session of a camera (segment ``n`` holds
``n*clip_frames <= frame_seq < (n+1)*clip_frames``), so a decoder restart starts new clips
instead of mixing two runs; both keys are deterministic, so replays overwrite. A clip is
written when its session moves on to a later segment, after ``clip_idle_s`` without frames,
and on shutdown. It is assembled from the rendered frames
this process holds plus any of the segment's renders already in S3 (rendered before a
restart), so a restart mid-segment does not shorten the clip.

Clips survive a crash: S3, not memory, is the source of truth. Opening a segment stores a
marker (:func:`vidpipe.keys.pending_clip`) before the batch's offsets are committed, and
writing the clip deletes it; :meth:`RendererService.recover_pending`, run at start-up,
rebuilds the clip of every marker left behind (a kill before the upload, or within the idle
window after a stream ended) from the segment's rendered frames in S3.

On-demand requests (``RequestProcessed`` on ``requests.done.v1``) are drawn the same way and
stored at :func:`vidpipe.keys.request_render`; they are single images, so no clip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np
from aiokafka import ConsumerRecord
from prometheus_client import Counter

from services.renderer.clips import encode_clip
from services.renderer.draw import draw_detections
from vidpipe import keys
from vidpipe.bus import DeadLetterPublisher, Rejected
from vidpipe.events import (
    Detection,
    DetectionsProduced,
    FrameMetrics,
    FrameRef,
    InvalidEvent,
    ObjectRef,
    RequestProcessed,
    encode_event,
    parse_event,
)
from vidpipe.objectstore import ObjectNotFound
from vidpipe.topics import METRICS, RENDERS_BUCKET, REQUESTS_DONE

log = logging.getLogger(__name__)

RENDERED = Counter("vidpipe_renderer_frames_total", "Frames rendered")
REQUESTS_RENDERED = Counter("vidpipe_renderer_requests_total", "On-demand requests rendered")
CLIPS = Counter("vidpipe_renderer_clips_total", "MP4 clips written")
CLIPS_RECOVERED = Counter(
    "vidpipe_renderer_clips_recovered_total",
    "Clips rebuilt from rendered frames in S3 after a renderer stopped before writing them",
)


class RenderStore(Protocol):
    async def aget(self, bucket: str, key: str) -> bytes: ...
    async def aput(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...
    async def adelete(self, bucket: str, key: str) -> None: ...
    def iter_keys(self, bucket: str, prefix: str = "") -> Any: ...


class Producer(Protocol):
    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Awaitable[Any]: ...


class _Drawable(Protocol):
    @property
    def image(self) -> ObjectRef: ...
    @property
    def detections(self) -> tuple[Detection, ...]: ...


@dataclass
class _OpenClip:
    client_id: str
    camera_id: str
    session_id: str
    segment: int
    #: True when this process wrote the camera's previous segment, so it saw this one from
    #: its first frame and need not look in S3 for renders made before a restart.
    seen_from_start: bool = False
    frames: dict[int, bytes] = field(default_factory=dict)
    last_update: float = field(default_factory=time.monotonic)


class RendererService:
    def __init__(
        self,
        store: RenderStore,
        producer: Producer,
        dead_letters: DeadLetterPublisher,
        jpeg_quality: int = 85,
        clip_frames: int = 100,
        clip_fps: float = 10.0,
    ) -> None:
        self._store = store
        self._producer = producer
        self._dead_letters = dead_letters
        self._quality = jpeg_quality
        self._clip_frames = clip_frames
        self._clip_fps = clip_fps
        #: (client, camera, session) -> the segment being collected
        self._open: dict[tuple[str, str, str], _OpenClip] = {}

    async def handle_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        rejected: list[Rejected] = []
        asked = [rec for rec in records if rec.topic == REQUESTS_DONE]
        records = [rec for rec in records if rec.topic != REQUESTS_DONE]
        # requests first: someone is waiting for each of them
        await asyncio.gather(*(self._render_request(rec, rejected) for rec in asked))
        results = await asyncio.gather(*(self._render(rec, rejected) for rec in records))
        rendered = [r for r in results if r is not None]
        for event, jpeg in sorted(rendered, key=lambda r: r[0].frame_seq):
            await self._add_to_clip(event, jpeg)
        await self._dead_letters.publish(rejected)
        await asyncio.gather(*(self._send_metrics(event) for event, _ in rendered))

    async def _render(
        self, rec: ConsumerRecord[bytes, bytes], rejected: list[Rejected]
    ) -> tuple[DetectionsProduced, bytes] | None:
        try:
            event = parse_event(DetectionsProduced, rec.value or b"")
            data = await self._store.aget(event.image.bucket, event.image.key)
            jpeg = await asyncio.to_thread(self._draw, data, event)
        except InvalidEvent as exc:
            rejected.append(Rejected(rec, str(exc), "invalid_event"))
            return None
        except ObjectNotFound as exc:
            rejected.append(Rejected(rec, f"frame image missing: {exc}", "missing_image"))
            return None
        except ValueError as exc:
            rejected.append(Rejected(rec, str(exc), "undecodable_image"))
            return None
        ref = keys.render(event)
        await self._store.aput(ref.bucket, ref.key, jpeg, "image/jpeg")
        RENDERED.inc()
        return event, jpeg

    async def _render_request(
        self, rec: ConsumerRecord[bytes, bytes], rejected: list[Rejected]
    ) -> None:
        try:
            event = parse_event(RequestProcessed, rec.value or b"")
            data = await self._store.aget(event.image.bucket, event.image.key)
            jpeg = await asyncio.to_thread(self._draw, data, event)
        except InvalidEvent as exc:
            rejected.append(Rejected(rec, str(exc), "invalid_event"))
            return
        except ObjectNotFound as exc:
            rejected.append(Rejected(rec, f"request image missing: {exc}", "missing_image"))
            return
        except ValueError as exc:
            rejected.append(Rejected(rec, str(exc), "undecodable_image"))
            return
        ref = keys.request_render(event.client_id, event.request_id)
        await self._store.aput(ref.bucket, ref.key, jpeg, "image/jpeg")
        REQUESTS_RENDERED.inc()

    def _draw(self, data: bytes, event: _Drawable) -> bytes:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"undecodable JPEG at s3://{event.image.bucket}/{event.image.key}")
        drawn = draw_detections(image, event.detections)
        ok, buf = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            raise ValueError("JPEG encoding of the rendered frame failed")
        return buf.tobytes()

    async def _send_metrics(self, event: DetectionsProduced) -> None:
        metrics = FrameMetrics(
            client_id=event.client_id,
            camera_id=event.camera_id,
            session_id=event.session_id,
            frame_seq=event.frame_seq,
            stage="renderer",
            capture_ts_ns=event.capture_ts_ns,
            rendered_ts_ns=time.time_ns(),
        )

        fut = await self._producer.send(
            METRICS, encode_event(metrics), key=event.camera_id.encode()
        )
        await fut

    async def _add_to_clip(self, event: DetectionsProduced, jpeg: bytes) -> None:
        camera = (event.client_id, event.camera_id, event.session_id)
        segment = event.frame_seq // self._clip_frames
        clip = self._open.get(camera)
        moved_on = clip is not None and clip.segment < segment
        if clip is not None and clip.segment != segment:
            await self._write_clip(self._open.pop(camera))
            clip = None
        if clip is None:
            clip = self._open[camera] = _OpenClip(
                event.client_id,
                event.camera_id,
                event.session_id,
                segment,
                seen_from_start=moved_on,
            )
            marker = keys.pending_clip(*camera, segment)
            await self._store.aput(marker.bucket, marker.key, b"", "application/octet-stream")
        clip.frames[event.frame_seq] = jpeg
        clip.last_update = time.monotonic()

    async def flush_idle(self, idle_s: float) -> None:
        """Write clips that got no frame for ``idle_s`` seconds."""
        now = time.monotonic()
        for camera, clip in list(self._open.items()):
            if now - clip.last_update >= idle_s:
                await self._write_clip(self._open.pop(camera))

    async def flush_all(self) -> None:
        """Write every open clip; one that fails is logged and left to
        :meth:`recover_pending` (its marker stays), the others are still written."""
        for camera in list(self._open):
            try:
                await self._write_clip(self._open.pop(camera))
            except Exception:
                log.exception("clip not written; it is rebuilt at the next start")

    async def recover_pending(self) -> int:
        """Rebuild the clip of every pending-clip marker that no segment of this process
        holds (left by a renderer that stopped before writing it) from the segment's
        rendered frames in S3; returns how many clips were written. A marker whose segment
        has no rendered frame is dropped. Run at start-up; another replica still collecting
        that segment overwrites the clip with its full version when it finishes.

        Raises:
            botocore.exceptions.BotoCoreError, ClientError: S3 unavailable.
        """
        found = await asyncio.to_thread(
            lambda: list(self._store.iter_keys(RENDERS_BUCKET, keys.PENDING_CLIPS_PREFIX))
        )
        written = 0
        for key in found:
            parsed = keys.parse_pending_clip(key)
            if parsed is None:
                continue
            client_id, camera_id, session_id, segment = parsed
            held = self._open.get((client_id, camera_id, session_id))
            if held is not None and held.segment == segment:
                continue
            clip = _OpenClip(client_id, camera_id, session_id, segment)
            if await self._write_clip(clip):
                CLIPS_RECOVERED.inc()
                written += 1
                log.info("clip rebuilt from S3", extra={"key": key})
        return written

    async def _write_clip(self, clip: _OpenClip) -> bool:
        """Encode and upload the clip, then delete its marker; False when the segment has no
        frame at all (nothing to write; the marker is deleted too)."""
        frames = dict(clip.frames)
        first = clip.segment * self._clip_frames
        wanted = range(first, first + self._clip_frames)
        if not clip.seen_from_start:
            stored = await asyncio.to_thread(self._stored_render_seqs, clip)
            for seq in sorted((stored & set(wanted)) - frames.keys()):
                ref = keys.render(
                    FrameRef(
                        client_id=clip.client_id,
                        camera_id=clip.camera_id,
                        session_id=clip.session_id,
                        frame_seq=seq,
                    )
                )
                frames[seq] = await self._store.aget(ref.bucket, ref.key)
        ordered = [frames[s] for s in sorted(frames)]
        marker = keys.pending_clip(clip.client_id, clip.camera_id, clip.session_id, clip.segment)
        if not ordered:
            await self._store.adelete(marker.bucket, marker.key)
            return False
        data = await asyncio.to_thread(encode_clip, ordered, self._clip_fps)
        ref = keys.clip(clip.client_id, clip.camera_id, clip.session_id, clip.segment)
        await self._store.aput(ref.bucket, ref.key, data, "video/mp4")
        await self._store.adelete(marker.bucket, marker.key)
        CLIPS.inc()
        log.info(
            "clip written",
            extra={"key": ref.key, "frames": len(ordered), "camera_id": clip.camera_id},
        )
        return True

    def _stored_render_seqs(self, clip: _OpenClip) -> set[int]:
        prefix = keys.session_prefix(clip.client_id, clip.camera_id, clip.session_id)
        found = (
            keys.parse_seq(key, prefix, ".jpg")
            for key in self._store.iter_keys(RENDERS_BUCKET, prefix)
        )
        return {seq for seq in found if seq is not None}
