"""``vidpipe run decoder --camera ID``: read one camera's stream, store JPEGs, publish events.

A reader thread pulls frames from OpenCV/FFmpeg (blocking calls) into a bounded queue; the
event loop encodes, uploads and publishes them in stream order. When the queue is full the
reader waits, so a slow object store shows up as frame age rather than unbounded memory.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable
from typing import Any

from prometheus_client import Counter

from services.decoder.service import DecoderService
from services.decoder.settings import DecoderSettings
from services.decoder.source import Backoff, Frame, read_frames
from vidpipe.bus import make_producer
from vidpipe.cameras import CameraNotFound, get_camera
from vidpipe.db import create_engine
from vidpipe.logs import configure_logging
from vidpipe.objectstore import ObjectStore
from vidpipe.runtime import install_stop_signal, serve_metrics
from vidpipe.urls import mask_url

log = logging.getLogger("services.decoder")

RECONNECTS = Counter("vidpipe_decoder_reconnects_total", "Stream reconnect attempts")
_END = object()


def _read_into_queue(
    settings: DecoderSettings,
    url: str,
    fps: float,
    loop: asyncio.AbstractEventLoop,
    queue: asyncio.Queue[Any],
    stop: threading.Event,
) -> None:
    def on_reconnect(attempt: int, delay_s: float) -> None:
        RECONNECTS.inc()

    try:
        frames = read_frames(
            url,
            target_fps=fps,
            stop=stop,
            reconnect=settings.reconnect,
            backoff=Backoff(initial_s=settings.backoff_initial_s, max_s=settings.backoff_max_s),
            on_reconnect=on_reconnect,
        )
        for frame in frames:
            asyncio.run_coroutine_threadsafe(queue.put(frame), loop).result()
    except Exception as exc:
        asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()
    finally:
        asyncio.run_coroutine_threadsafe(queue.put(_END), loop).result()


async def run(settings: DecoderSettings) -> int:
    """Returns the number of frames published."""
    stop = install_stop_signal()
    serve_metrics(settings.metrics_port)
    engine = create_engine(settings.postgres, pool_size=1)
    try:
        with engine.connect() as conn:
            camera = get_camera(conn, settings.camera_id)
    except CameraNotFound:
        raise SystemExit(
            f"unknown camera {settings.camera_id!r}: add it with `vidpipe cameras add`"
        ) from None
    finally:
        engine.dispose()
    url = settings.url or camera.url
    fps = settings.fps or camera.fps
    producer = make_producer(settings.kafka)
    await producer.start()
    service = DecoderService(
        ObjectStore(settings.s3),
        producer,
        camera.client_id,
        camera.camera_id,
        settings.jpeg_quality,
    )
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=settings.queue_size)
    reader_stop = threading.Event()
    reader = threading.Thread(
        target=_read_into_queue,
        args=(settings, url, fps, asyncio.get_running_loop(), queue, reader_stop),
        name="frame-reader",
        daemon=True,
    )
    log.info(
        "decoder started",
        extra={"camera_id": camera.camera_id, "url": mask_url(url), "fps": fps},
    )
    reader.start()
    in_flight: deque[Awaitable[Any]] = deque()
    published = 0
    stop_wait = asyncio.create_task(stop.wait())
    try:
        while True:
            get = asyncio.create_task(queue.get())
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
                await service.handle_frame(frame.seq, frame.image, frame.capture_ts_ns)
            )
            published += 1
            while len(in_flight) > 256:
                await in_flight.popleft()
        await asyncio.gather(*in_flight)
    finally:
        reader_stop.set()
        stop_wait.cancel()
        # Unblock the reader if it waits on a full queue, then let it release the capture.
        while not queue.empty():
            queue.get_nowait()
        await asyncio.to_thread(reader.join, 5)
        await producer.stop()
        log.info("decoder stopped", extra={"camera_id": camera.camera_id, "frames": published})
    return published


def main(settings: DecoderSettings | None = None) -> None:
    settings = settings or DecoderSettings()  # type: ignore[call-arg]
    configure_logging(settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
