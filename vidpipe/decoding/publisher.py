"""The decoder's unit of work: one decoded frame -> JPEG in S3 -> ``FrameDecoded`` event.

Object keys follow :mod:`vidpipe.keys` (derived from the frame's identity: camera, stream
session, seq), so a replay of the same session overwrites rather than duplicates, and each
decoder start opens a new session (:mod:`vidpipe.sessions`) that overwrites nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import cv2
import numpy as np
from prometheus_client import Counter

from vidpipe import keys
from vidpipe.events import FrameDecoded, FrameMetrics, FrameRef, encode_event
from vidpipe.sessions import new_session_id
from vidpipe.topics import FRAMES_DECODED, METRICS

FRAMES_DECODED_TOTAL = Counter("vidpipe_decoder_frames_total", "Frames stored and published")


class FrameStore(Protocol):
    async def aput(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...


class Producer(Protocol):
    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Awaitable[Any]: ...


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """uint8 ``[H, W, 3]`` BGR -> JPEG bytes. Raises ValueError if OpenCV refuses it."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for image of shape {image.shape}")
    return buf.tobytes()


class DecoderService:
    def __init__(
        self,
        store: FrameStore,
        producer: Producer,
        client_id: str,
        camera_id: str,
        jpeg_quality: int = 90,
        session_id: str | None = None,
    ) -> None:
        """``session_id``: the stream session the frames belong to; None opens a new one."""
        self._store = store
        self._producer = producer
        self._client_id = client_id
        self._camera_id = camera_id
        self._quality = jpeg_quality
        self.session_id = session_id or new_session_id()

    async def handle_frame(
        self, frame_seq: int, image: np.ndarray, capture_ts_ns: int
    ) -> Awaitable[Any]:
        """Store the frame, then enqueue its event; returns the send's delivery future.

        The image is durable in S3 before the event that references it is sent.
        """
        data = await asyncio.to_thread(encode_jpeg, image, self._quality)
        ref = keys.frame_image(
            FrameRef(
                client_id=self._client_id,
                camera_id=self._camera_id,
                session_id=self.session_id,
                frame_seq=frame_seq,
            )
        )
        await self._store.aput(ref.bucket, ref.key, data, "image/jpeg")
        height, width = image.shape[:2]
        event = FrameDecoded(
            client_id=self._client_id,
            camera_id=self._camera_id,
            session_id=self.session_id,
            frame_seq=frame_seq,
            capture_ts_ns=capture_ts_ns,
            decoded_ts_ns=time.time_ns(),
            width=width,
            height=height,
            image=ref,
        )
        FRAMES_DECODED_TOTAL.inc()
        return await self._producer.send(
            FRAMES_DECODED, encode_event(event), key=self._camera_id.encode()
        )

    async def skip_frame(self, frame_seq: int, capture_ts_ns: int) -> Awaitable[Any]:
        """Record a frame read but not published (the loop lagged): a ``dropped`` metrics
        record of stage ``decoder``; returns the send's delivery future."""
        metrics = FrameMetrics(
            client_id=self._client_id,
            camera_id=self._camera_id,
            session_id=self.session_id,
            frame_seq=frame_seq,
            stage="decoder",
            capture_ts_ns=capture_ts_ns,
            dropped=True,
            drop_reason="skipped by the decoder: publishing lagged behind the stream",
        )
        return await self._producer.send(
            METRICS, encode_event(metrics), key=self._camera_id.encode()
        )
