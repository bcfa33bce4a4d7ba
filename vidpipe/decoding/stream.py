"""One camera's stream, decoded and published until its end or a stop: the decoder's loop.

A reader thread pulls frames from OpenCV/FFmpeg (blocking calls) and hands them to the event
loop through :class:`~vidpipe.decoding.handoff.LatestFrames`. For a live source the newest
frame wins: the reader never waits, so frames are grabbed (and timestamped) as the camera
sends them, and a slow store or broker shows up as skipped frames, counted, instead of
growing frame age. A file is read as fast as it is published, losslessly. The loop
encodes, uploads and publishes the frames in stream order; a skipped frame is published as a
``dropped`` :class:`~vidpipe.events.FrameMetrics` record of stage ``decoder``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from vidpipe.decoding.handoff import LatestFrames
from vidpipe.decoding.publisher import DecoderService
from vidpipe.decoding.source import Backoff, Frame, is_live, read_frames
from vidpipe.urls import mask_url

log = logging.getLogger(__name__)

RECONNECTS = Counter("vidpipe_decoder_reconnects_total", "Stream reconnect attempts")
SKIPPED = Counter(
    "vidpipe_decoder_frames_skipped_total", "Frames dropped because publishing lagged"
)
#: Sends awaiting the broker's acknowledgement before the loop waits for the oldest.
MAX_IN_FLIGHT = 64
_END = object()


@dataclass(frozen=True)
class StreamOptions:
    """How to read: target rate (fps), reconnects with backoff (s), frames buffered, and
    ``connect``, the URL policy checking (and pinning) the address before each connection
    (:func:`vidpipe.urlpolicy.connect_url`; None: open the URL as it is)."""

    fps: float
    reconnect: bool = True
    backoff: Backoff = field(default_factory=Backoff)
    buffer_frames: int = 8
    connect: Callable[[str], str] | None = None


@dataclass
class StreamStats:
    """What the stream did so far (read by status reporting)."""

    frames_read: int = 0
    frames_published: int = 0
    frames_skipped: int = 0
    reconnects: int = 0
    last_capture_ns: int | None = None
    reconnecting: bool = False
    started_ns: int = field(default_factory=time.time_ns)


class StreamDecoder:
    """Decodes ``url`` and publishes through ``service`` (which knows the camera)."""

    def __init__(self, service: DecoderService, url: str, options: StreamOptions) -> None:
        self._service = service
        self._url = url
        self._options = options
        self.stats = StreamStats()

    async def run(self, stop: asyncio.Event) -> int:
        """Until the stream ends (a file; a live source with reconnects off) or ``stop`` is
        set; returns the frames published. Every send is acknowledged before it returns.

        Raises:
            vidpipe.decoding.source.SourceOpenError: the source cannot be opened.
        """
        loop = asyncio.get_running_loop()
        skipped: list[Frame] = []
        buffer: LatestFrames[Any] = LatestFrames(
            loop, self._options.buffer_frames, skipped.append, lossless=not is_live(self._url)
        )
        reader_stop = threading.Event()
        reader = threading.Thread(
            target=self._read, args=(buffer, reader_stop), name="frame-reader", daemon=True
        )
        log.info("stream started", extra={"url": mask_url(self._url), "fps": self._options.fps})
        reader.start()
        in_flight: deque[Awaitable[Any]] = deque()
        stop_wait = asyncio.create_task(stop.wait())
        try:
            while True:
                get = asyncio.create_task(buffer.get())
                done, _ = await asyncio.wait({get, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    break
                item = get.result()
                if item is _END:
                    break
                if isinstance(item, Exception):
                    raise item
                frame: Frame = item
                in_flight.append(
                    await self._service.handle_frame(frame.seq, frame.image, frame.capture_ts_ns)
                )
                self.stats.frames_published += 1
                for lost in skipped:
                    in_flight.append(await self._service.skip_frame(lost.seq, lost.capture_ts_ns))
                SKIPPED.inc(len(skipped))
                self.stats.frames_skipped += len(skipped)
                skipped.clear()
                while len(in_flight) > MAX_IN_FLIGHT:
                    await in_flight.popleft()
            await asyncio.gather(*in_flight)
        finally:
            reader_stop.set()
            stop_wait.cancel()
            buffer.clear()
            await asyncio.to_thread(reader.join, 5)
            log.info(
                "stream stopped",
                extra={
                    "frames": self.stats.frames_published,
                    "skipped": self.stats.frames_skipped,
                },
            )
        return self.stats.frames_published

    def _read(self, buffer: LatestFrames[Any], stop: threading.Event) -> None:
        def on_reconnect(attempt: int, delay_s: float) -> None:
            RECONNECTS.inc()
            self.stats.reconnects += 1
            self.stats.reconnecting = True

        try:
            frames = read_frames(
                self._url,
                target_fps=self._options.fps,
                stop=stop,
                reconnect=self._options.reconnect,
                backoff=self._options.backoff,
                on_reconnect=on_reconnect,
                connect=self._options.connect,
            )
            live = is_live(self._url)
            for frame in frames:
                self.stats.frames_read += 1
                self.stats.last_capture_ns = frame.capture_ts_ns
                self.stats.reconnecting = False
                if live:
                    buffer.offer(frame)
                elif not buffer.put(frame, stop):
                    break
        except Exception as exc:
            buffer.offer_last(exc)
        finally:
            buffer.offer_last(_END)
