"""Frame source on a small generated video file, and its reconnect policy on a closed port."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidpipe.decoding.source import Backoff, Frame, SourceOpenError, mask_url, read_frames

FRAMES = 20
FPS = 10.0
WIDTH, HEIGHT = 64, 48


def brightness(seq: int) -> int:
    """Gray level painted into frame ``seq`` of the generated clip."""
    return 10 + seq * 10


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """20 frames at 10 fps, MJPG in AVI; frame i is flat gray ``brightness(i)``."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for seq in range(FRAMES):
        writer.write(np.full((HEIGHT, WIDTH, 3), brightness(seq), dtype=np.uint8))
    writer.release()
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def open_fds_to(path: Path) -> int:
    fd_dir = Path("/proc/self/fd")
    count = 0
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) == str(path):
                count += 1
        except OSError:
            continue
    return count


def test_read_frames_when_file_played_then_every_frame_arrives_in_order(clip: Path) -> None:
    # given
    stop = threading.Event()

    # when
    before_ns = time.time_ns()
    frames = list(read_frames(str(clip), target_fps=None, stop=stop, reconnect=False))

    # then
    assert [f.seq for f in frames] == list(range(FRAMES))
    assert all(f.image.shape == (HEIGHT, WIDTH, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [round(float(f.image.mean()) / 10) * 10 for f in frames] == [
        brightness(i) for i in range(FRAMES)
    ]
    stamps = [f.capture_ts_ns for f in frames]
    assert stamps == sorted(stamps) and stamps[0] >= before_ns


def test_read_frames_when_file_url_given_then_reads_same_file(clip: Path) -> None:
    # given
    url = clip.resolve().as_uri()

    # when
    frames = list(read_frames(url, target_fps=None, stop=threading.Event(), reconnect=False))

    # then
    assert url.startswith("file:///")
    assert len(frames) == FRAMES


def test_read_frames_when_target_fps_is_half_source_then_every_second_frame_kept(
    clip: Path,
) -> None:
    # given
    stop = threading.Event()

    # when
    frames = list(read_frames(str(clip), target_fps=5.0, stop=stop, reconnect=False))

    # then: seq keeps the stream index, so sampled-out frames leave gaps
    assert [f.seq for f in frames] == list(range(0, FRAMES, 2))
    assert [round(float(f.image.mean()) / 10) * 10 for f in frames] == [
        brightness(i) for i in range(0, FRAMES, 2)
    ]


def test_read_frames_when_target_fps_is_three_then_frames_follow_the_tick_grid(
    clip: Path,
) -> None:
    # given: 10 fps source, ticks every 1/3 s
    stop = threading.Event()

    # when
    seqs = [f.seq for f in read_frames(str(clip), target_fps=3.0, stop=stop, reconnect=False)]

    # then: first frame at or after each tick (0, 0.33, 0.67, 1.0, 1.33, 1.67 s)
    assert seqs == [0, 4, 7, 10, 14, 17]


def test_read_frames_when_target_fps_above_source_then_every_frame_kept(clip: Path) -> None:
    # when
    frames = list(read_frames(str(clip), target_fps=30.0, stop=threading.Event(), reconnect=False))

    # then
    assert [f.seq for f in frames] == list(range(FRAMES))


def test_read_frames_when_replayed_then_same_seqs(clip: Path) -> None:
    # when
    first = [
        f.seq
        for f in read_frames(str(clip), target_fps=4.0, stop=threading.Event(), reconnect=False)
    ]
    second = [
        f.seq
        for f in read_frames(str(clip), target_fps=4.0, stop=threading.Event(), reconnect=False)
    ]

    # then
    assert first == second and len(first) == 8


def test_read_frames_when_stop_set_then_iteration_ends_and_file_is_released(clip: Path) -> None:
    # given
    stop = threading.Event()
    received: list[Frame] = []
    frames = read_frames(str(clip), target_fps=None, stop=stop, reconnect=False)

    # when
    for frame in frames:
        received.append(frame)
        if len(received) == 3:
            assert open_fds_to(clip.resolve()) == 1
            stop.set()

    # then
    assert [f.seq for f in received] == [0, 1, 2]
    assert open_fds_to(clip.resolve()) == 0


def test_read_frames_when_path_missing_then_raises_source_open_error(tmp_path: Path) -> None:
    # when / then
    with pytest.raises(SourceOpenError, match="not found"):
        read_frames(
            str(tmp_path / "nope.mp4"), target_fps=None, stop=threading.Event(), reconnect=False
        )


def test_read_frames_when_file_is_not_video_then_raises_source_open_error(tmp_path: Path) -> None:
    # given
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    frames = read_frames(str(junk), target_fps=None, stop=threading.Event(), reconnect=False)

    # when / then
    with pytest.raises(SourceOpenError, match="cannot open"):
        next(frames)


def test_read_frames_when_scheme_unsupported_then_raises_without_password() -> None:
    # when / then
    with pytest.raises(SourceOpenError, match="unsupported source scheme 'http'") as caught:
        read_frames(
            "http://admin:hunter2@cam/x", target_fps=None, stop=threading.Event(), reconnect=False
        )
    assert "hunter2" not in str(caught.value)


def test_read_frames_when_target_fps_not_positive_then_raises_value_error(clip: Path) -> None:
    # when / then
    with pytest.raises(ValueError, match="target_fps"):
        read_frames(str(clip), target_fps=0, stop=threading.Event(), reconnect=False)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        ("rtsps://u:p%40ss@cam.example/live?x=1", "rtsps://u:***@cam.example/live?x=1"),
        ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
        ("rtsp://viewer@10.0.0.5/s", "rtsp://viewer@10.0.0.5/s"),
        ("rtsp://a:b@[::1]:8554/s", "rtsp://a:***@[::1]:8554/s"),
    ],
)
def test_mask_url_when_credentials_present_then_password_hidden(url: str, masked: str) -> None:
    # when / then
    assert mask_url(url) == masked


def test_backoff_when_attempts_grow_then_delays_grow_to_the_cap() -> None:
    # given
    backoff = Backoff(initial_s=0.5, max_s=3.0, multiplier=2.0, jitter_s=0.0)

    # when
    delays = [backoff.delay_s(attempt) for attempt in range(1, 6)]

    # then
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_when_jitter_set_then_delay_within_jitter_band() -> None:
    # given
    backoff = Backoff(initial_s=1.0, max_s=10.0, multiplier=2.0, jitter_s=0.5)

    # when
    delays = [backoff.delay_s(2) for _ in range(50)]

    # then
    assert all(2.0 <= d <= 2.5 for d in delays)
    assert len(set(delays)) > 1


def test_read_frames_when_live_source_down_then_reconnects_with_growing_delays_and_masked_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given: nothing listens on the port, so every open fails at once
    url = f"rtsp://admin:hunter2@127.0.0.1:{closed_port()}/cam"
    stop = threading.Event()
    calls: list[tuple[int, float]] = []

    def on_reconnect(attempt: int, delay_s: float) -> None:
        calls.append((attempt, delay_s))
        if attempt == 3:
            stop.set()

    # when
    with caplog.at_level(logging.WARNING, logger="vidpipe.decoding.source"):
        frames = list(
            read_frames(
                url,
                target_fps=None,
                stop=stop,
                reconnect=True,
                backoff=Backoff(initial_s=0.01, max_s=1.0, multiplier=2.0, jitter_s=0.0),
                on_reconnect=on_reconnect,
            )
        )

    # then
    assert frames == []
    assert calls == [(1, 0.01), (2, 0.02), (3, 0.04)]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all("admin:***@127.0.0.1" in r.getMessage() for r in warnings)
    assert "hunter2" not in caplog.text
    assert [getattr(r, "attempt", None) for r in warnings] == [1, 2, 3]


def test_read_frames_when_stop_set_during_backoff_then_returns_promptly() -> None:
    # given: a 30 s backoff, and stop set 0.2 s into it
    stop = threading.Event()
    url = f"rtsp://127.0.0.1:{closed_port()}/cam"

    def on_reconnect(attempt: int, delay_s: float) -> None:
        threading.Timer(0.2, stop.set).start()

    # when
    started = time.monotonic()
    frames = list(
        read_frames(
            url,
            target_fps=None,
            stop=stop,
            reconnect=True,
            backoff=Backoff(initial_s=30.0, max_s=30.0, jitter_s=0.0),
            on_reconnect=on_reconnect,
        )
    )
    elapsed = time.monotonic() - started

    # then
    assert frames == []
    assert elapsed < 2.0


def test_read_frames_when_live_source_down_and_no_reconnect_then_raises() -> None:
    # given
    url = f"rtsp://user:secret@127.0.0.1:{closed_port()}/cam"
    frames = read_frames(url, target_fps=None, stop=threading.Event(), reconnect=False)

    # when / then
    with pytest.raises(SourceOpenError) as caught:
        next(frames)
    assert "secret" not in str(caught.value) and "user:***@" in str(caught.value)


def test_read_frames_when_live_source_opened_then_transport_joins_operator_ffmpeg_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: an operator's own FFmpeg options, one of them a low-latency default of ours
    monkeypatch.setenv(
        "OPENCV_FFMPEG_CAPTURE_OPTIONS", "max_delay;500000|probesize;5000|rtsp_transport;udp"
    )
    url = f"rtsp://127.0.0.1:{closed_port()}/cam"

    # when
    with pytest.raises(SourceOpenError):
        next(read_frames(url, target_fps=None, stop=threading.Event(), reconnect=False))

    # then the operator's options win, our other defaults join, the transport is the setting
    assert os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == (
        "max_delay;500000|probesize;5000|analyzeduration;0|rtsp_transport;tcp"
    )
