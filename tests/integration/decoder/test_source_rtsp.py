"""Frame source against a real RTSP server (gst-rtsp-server on loopback, RTP over TCP)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.integration.decoder.conftest import CLIP_FRAMES, RtspServer
from vidpipe.decoding.source import Backoff, Frame, read_frames

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WIDTH, HEIGHT = 768, 576


def decode_file(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    images = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    cap.release()
    return images


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_read_frames_when_rtsp_clip_played_then_every_frame_arrives_in_order_in_real_time(
    rtsp_server: RtspServer,
) -> None:
    # given
    reference = decode_file(rtsp_server.file)
    stop = threading.Event()

    # when
    started = time.monotonic()
    frames = list(read_frames(rtsp_server.url, target_fps=None, stop=stop, reconnect=False))
    elapsed = time.monotonic() - started

    # then: the whole clip, frame for frame, paced at 10 fps, ended by the server's end of stream
    assert len(reference) == CLIP_FRAMES
    assert [f.seq for f in frames] == list(range(CLIP_FRAMES))
    assert all(f.image.shape == (HEIGHT, WIDTH, 3) for f in frames)
    assert max(mean_abs_diff(f.image, ref) for f, ref in zip(frames, reference, strict=True)) < 1.0
    assert elapsed >= 0.9 * CLIP_FRAMES / 10.0


def test_read_frames_when_rtsp_sampled_to_half_rate_then_every_second_frame_kept(
    rtsp_server: RtspServer,
) -> None:
    # given
    stop = threading.Event()

    # when
    frames = list(read_frames(rtsp_server.url, target_fps=5.0, stop=stop, reconnect=False))

    # then
    assert [f.seq for f in frames] == list(range(0, CLIP_FRAMES, 2))


def test_read_frames_when_server_killed_mid_stream_then_reconnects_and_seq_continues(
    rtsp_server: RtspServer,
) -> None:
    # given: the server dies after frame 5 and comes back while the third reconnect waits
    reference = decode_file(rtsp_server.file)
    stop = threading.Event()
    reconnects: list[tuple[int, float]] = []
    seq_at_loss: list[int] = []
    received: list[Frame] = []

    def on_reconnect(attempt: int, delay_s: float) -> None:
        if not reconnects:
            seq_at_loss.append(received[-1].seq)
        reconnects.append((attempt, delay_s))
        if attempt == 3:
            rtsp_server.start()

    frames = read_frames(
        rtsp_server.url,
        target_fps=None,
        stop=stop,
        reconnect=True,
        backoff=Backoff(initial_s=0.2, max_s=5.0, multiplier=2.0, jitter_s=0.0),
        on_reconnect=on_reconnect,
    )

    # when
    for frame in frames:
        received.append(frame)
        if frame.seq == 5:
            rtsp_server.kill()
        if seq_at_loss and frame.seq >= seq_at_loss[0] + 10:
            stop.set()

    # then: delays grew while the server was down
    assert [attempt for attempt, _ in reconnects] == [1, 2, 3]
    assert [delay for _, delay in reconnects] == pytest.approx([0.2, 0.4, 0.8])
    # seq never restarts: one unbroken count across the reconnect
    assert [f.seq for f in received] == list(range(len(received)))
    after = [f for f in received if f.seq > seq_at_loss[0]]
    assert len(after) == 10
    # the restarted server plays the clip from its start again
    assert mean_abs_diff(after[0].image, reference[0]) < 1.0
    assert all(f.image.shape == (HEIGHT, WIDTH, 3) for f in after)


def test_read_frames_when_stop_set_during_backoff_then_returns_promptly(
    rtsp_server: RtspServer,
) -> None:
    # given: the server dies, the first reconnect would wait 30 s, and stop comes 0.3 s into it
    stop = threading.Event()
    stop_set_at: list[float] = []

    def set_stop() -> None:
        stop_set_at.append(time.monotonic())
        stop.set()

    def on_reconnect(attempt: int, delay_s: float) -> None:
        threading.Timer(0.3, set_stop).start()

    frames = read_frames(
        rtsp_server.url,
        target_fps=None,
        stop=stop,
        reconnect=True,
        backoff=Backoff(initial_s=30.0, max_s=30.0, jitter_s=0.0),
        on_reconnect=on_reconnect,
    )

    # when
    for frame in frames:
        if frame.seq == 2:
            rtsp_server.kill()
    ended_at = time.monotonic()

    # then
    assert len(stop_set_at) == 1
    assert ended_at - stop_set_at[0] < 1.0
