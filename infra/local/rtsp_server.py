#!/usr/bin/python3
"""Loopback RTSP server that plays one H.264 MP4 file like a camera (gst-rtsp-server).

Run with the Debian interpreter, which has GStreamer's ``gi`` bindings
(``infra/local/install-media.sh`` installs them)::

    /usr/bin/python3 infra/local/rtsp_server.py --mount /vtest --file var/assets/vtest.mp4

serves ``rtsp://127.0.0.1:8554/vtest`` (``--port`` defaults to 8554) over RTP/UDP or RTP/TCP
(interleaved). Every client gets its own pipeline, so each one receives the file from its first
frame; frames leave at the file's frame rate (the RTP sinks sync to the pipeline clock); there is
no re-encoding (demux, parse, packetize). At end of file the pipeline's EOS makes the RTP session
send RTCP BYE, on which an FFmpeg/OpenCV reader ends the stream (``read()`` returns False).
SIGTERM or SIGINT stops the server cleanly. With ``--once`` the server also exits after the
first client that streamed (stayed connected for :data:`ONCE_MIN_S` or more) closes: a finite
camera that a reconnecting reader then finds gone, which is how the demo knows its clip ended.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

logger = logging.getLogger("rtsp_server")

SESSION_CLEANUP_PERIOD_S = 2
#: A client connected this long (s) streamed (not just an OPTIONS/DESCRIBE probe).
ONCE_MIN_S = 3.0


def launch_line(file: Path) -> str:
    """gst-launch description of the media: MP4 → H.264 access units → RTP payloader ``pay0``.

    SPS/PPS go in-band before every IDR access unit via h264parse, not via the payloader: the
    payloader repeats them before each IDR *slice*, which splits multi-slice keyframes (x264 with
    slice threads) into two pictures at an FFmpeg receiver.
    """
    location = str(file).replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'( filesrc location="{location}" ! qtdemux name=demux demux.video_0 '
        "! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=0 )"
    )


def file_factory(file: Path) -> GstRtspServer.RTSPMediaFactory:
    """Media factory for ``file``: one unshared pipeline per client, started from frame 0."""
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(file))
    factory.set_shared(False)
    return factory


def _peer(client: GstRtspServer.RTSPClient) -> str:
    conn = client.get_connection()
    return f"{conn.get_ip()}" if conn is not None else "?"


def serve(file: Path, host: str, port: int, mount: str, once: bool = False) -> int:
    """Run the server until SIGTERM/SIGINT (or, ``once``, until the first client that
    streamed closes); returns the process exit code."""
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(host)
    server.set_service(str(port))
    server.get_mount_points().add_factory(mount, file_factory(file))
    loop = GLib.MainLoop()

    def on_client_connected(_server: Any, client: GstRtspServer.RTSPClient) -> None:
        peer, connected = _peer(client), time.monotonic()
        logger.info("client connected from %s", peer)

        def closed(_client: Any) -> None:
            streamed_s = time.monotonic() - connected
            logger.info("client %s closed after %.1f s", peer, streamed_s)
            if once and streamed_s >= ONCE_MIN_S:
                logger.info("--once: the stream was played; stopping")
                loop.quit()

        client.connect("closed", closed)

    server.connect("client-connected", on_client_connected)
    if server.attach(None) == 0:
        logger.error("cannot listen on %s:%d (port in use?)", host, port)
        return 1
    pool = server.get_session_pool()

    def cleanup_sessions() -> bool:
        pool.cleanup()  # expire sessions of clients that vanished without TEARDOWN
        return GLib.SOURCE_CONTINUE

    GLib.timeout_add_seconds(SESSION_CLEANUP_PERIOD_S, cleanup_sessions)

    def stop(signum: int) -> bool:
        logger.info("signal %d: stopping", signum)
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, stop, signal.SIGTERM)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, stop, signal.SIGINT)
    logger.info("serving %s at rtsp://%s:%d%s", file, host, port, mount)
    loop.run()
    # Drop every client (tears down its pipeline) before exiting.
    server.client_filter(lambda *_: GstRtspServer.RTSPFilterResult.REMOVE, None)
    logger.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve an H.264 MP4 file over RTSP on loopback.")
    parser.add_argument("--file", type=Path, required=True, help="H.264 video in MP4/MOV")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--mount", default="/vtest", help="path part of the URL, e.g. /vtest")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback by default)")
    parser.add_argument(
        "--once", action="store_true", help="exit after the first client that streamed closes"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    if not args.file.is_file():
        logger.error("%s is not a file", args.file)
        return 2
    mount = args.mount if args.mount.startswith("/") else "/" + args.mount
    return serve(args.file.resolve(), args.host, args.port, mount, args.once)


if __name__ == "__main__":
    raise SystemExit(main())
