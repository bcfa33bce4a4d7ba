"""``vidpipe run decoder --camera ID``: read one camera's stream, store JPEGs, publish events
(the loop itself is :class:`vidpipe.decoding.stream.StreamDecoder`)."""

from __future__ import annotations

import asyncio
import functools
import logging

from services.decoder.settings import DecoderSettings
from vidpipe.bus import make_producer
from vidpipe.cameras import AmbiguousCamera, CameraNotFound, UrlCipher, get_camera, stream_url
from vidpipe.db import create_engine
from vidpipe.decoding.publisher import DecoderService
from vidpipe.decoding.source import Backoff
from vidpipe.decoding.stream import StreamDecoder, StreamOptions
from vidpipe.logs import configure_logging
from vidpipe.objectstore import ObjectStore
from vidpipe.runtime import install_stop_signal, serve_metrics
from vidpipe.urlpolicy import UrlPolicy, connect_url

log = logging.getLogger("services.decoder")


async def run(settings: DecoderSettings) -> int:
    """Returns the number of frames published. Every connection goes through the camera URL
    policy of ``settings.cameras`` (resolved, checked and pinned: no DNS rebinding)."""
    stop = install_stop_signal()
    serve_metrics(settings.metrics_port, settings.metrics_host)
    policy = UrlPolicy.of(settings.cameras)
    engine = create_engine(settings.postgres, pool_size=1)
    try:
        with engine.connect() as conn:
            camera = get_camera(conn, settings.camera_id, settings.client_id)
            url = settings.url or stream_url(
                conn, camera.client_id, camera.camera_id, UrlCipher.of(settings.cameras)
            )
    except CameraNotFound:
        raise SystemExit(
            f"unknown camera {settings.camera_id!r}: add it with `vidpipe cameras add`"
        ) from None
    except AmbiguousCamera as exc:
        raise SystemExit(f"{exc} (--client or VIDPIPE_CLIENT_ID)") from None
    finally:
        engine.dispose()
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        service = DecoderService(
            ObjectStore(settings.s3),
            producer,
            camera.client_id,
            camera.camera_id,
            settings.jpeg_quality,
        )
        options = StreamOptions(
            fps=settings.fps or camera.fps,
            reconnect=settings.reconnect,
            backoff=Backoff(initial_s=settings.backoff_initial_s, max_s=settings.backoff_max_s),
            buffer_frames=settings.buffer_frames,
            connect=functools.partial(connect_url, policy=policy),
        )
        stream = StreamDecoder(service, url, options)
        log.info("decoder started", extra={"camera_id": camera.camera_id})
        return await stream.run(stop)
    finally:
        await producer.stop()


def main(settings: DecoderSettings | None = None) -> None:
    settings = settings or DecoderSettings()  # type: ignore[call-arg]
    configure_logging(settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
