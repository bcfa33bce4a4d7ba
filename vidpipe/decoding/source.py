"""Frame source of the decoder: decoded BGR frames from an RTSP camera or a video file.

:func:`read_frames` yields :class:`Frame` objects. ``Frame.seq`` is the frame's index in the
source's stream as read (every frame counts, sampled-out ones too), so a file replay yields the
same seqs and the object keys derived from them are stable. A live source that drops is reopened
with exponential backoff and its seqs keep counting upward across reconnects.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np
from tenacity import RetryCallState, Retrying, wait_exponential, wait_random

from vidpipe.urls import mask_url

logger = logging.getLogger(__name__)

LIVE_SCHEMES = frozenset({"rtsp", "rtsps"})
_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_env_lock = threading.Lock()


class SourceOpenError(RuntimeError):
    """The source cannot be opened: unsupported URL scheme, missing/unreadable file, or a live
    source that failed to open while reconnecting is off."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    ``seq``: 0-based index in the source's stream as read, before fps sampling.
    ``image``: uint8 BGR array of shape [H, W, 3].
    ``capture_ts_ns``: wall clock (``time.time_ns()``, ns since epoch) when it was read.
    """

    seq: int
    image: np.ndarray
    capture_ts_ns: int


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``initial_s * multiplier ** (attempt - 1)`` capped at ``max_s`` seconds,
    plus uniform jitter in ``[0, jitter_s]`` seconds (computed by tenacity's wait strategies)."""

    initial_s: float = 0.5
    max_s: float = 10.0
    multiplier: float = 2.0
    jitter_s: float = 0.25

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s or self.multiplier < 1:
            raise ValueError(f"invalid backoff {self}")
        if self.jitter_s < 0:
            raise ValueError(f"invalid backoff jitter {self.jitter_s}")

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait before reconnect ``attempt`` (1-based)."""
        wait = wait_exponential(
            multiplier=self.initial_s, exp_base=self.multiplier, max=self.max_s
        ) + wait_random(0, self.jitter_s)
        state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return float(wait(state))


@dataclass(frozen=True)
class _Source:
    url: str  # as given; only ever logged through mask_url
    target: str  # what cv2 opens: the URL for live sources, a filesystem path for files
    live: bool


@dataclass(frozen=True)
class _CaptureOptions:
    rtsp_transport: str
    open_timeout_s: float
    read_timeout_s: float


def read_frames(
    url: str,
    *,
    target_fps: float | None,
    stop: threading.Event,
    reconnect: bool,
    backoff: Backoff | None = None,
    on_reconnect: Callable[[int, float], None] | None = None,
    rtsp_transport: str = "tcp",
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 10.0,
    connect: Callable[[str], str] | None = None,
) -> Iterator[Frame]:
    """Frames of ``url``, sampled to at most ``target_fps`` (None keeps every frame).

    Sources: ``rtsp://``/``rtsps://`` URLs (FFmpeg; ``rtsp_transport`` "tcp" or "udp" goes into
    ``OPENCV_FFMPEG_CAPTURE_OPTIONS``, process-wide, other options there kept) and local files
    (``file:///abs/path`` or a plain path). A frame is kept when its stream time
    (seq / source fps; for files without a rate, the container position; for live streams
    without a rate, wall-clock time) reaches the next sampling tick of ``1 / target_fps`` s.

    End of a file ends the iterator. End or loss of a live stream ends it too when
    ``reconnect`` is False; otherwise the source is reopened after ``backoff`` delays
    (attempt 1, 2, ... until a frame arrives again), each announced by a warning and by
    ``on_reconnect(attempt, delay_s)``. Setting ``stop`` ends the iterator within one read or
    at once during a backoff wait; the capture is always released. ``open_timeout_s`` and
    ``read_timeout_s`` bound how long FFmpeg blocks on a silent live source.

    ``connect`` (the URL policy, :func:`vidpipe.urlpolicy.connect_url`) maps the URL to what
    is opened, before each connection: it raises ``ValueError`` for a refused URL (the
    source is not opened, no retry) and ``OSError`` for a host that does not resolve now
    (a failed open, retried like one).

    Raises:
        SourceOpenError: here for an unsupported scheme, a missing file or a file the policy
            refuses; on first iteration when a file, or a live source with ``reconnect``
            False, fails to open; whenever the policy refuses a live source's address.
        ValueError: ``target_fps`` is not positive or ``rtsp_transport`` is unknown.
    """
    if target_fps is not None and not target_fps > 0:
        raise ValueError(f"target_fps must be positive, got {target_fps}")
    if rtsp_transport not in ("tcp", "udp"):
        raise ValueError(f"rtsp_transport must be 'tcp' or 'udp', got {rtsp_transport!r}")
    if connect is not None and not is_live(url):
        try:
            connect(url)
        except (ValueError, OSError) as exc:
            raise SourceOpenError(f"{mask_url(url)} refused: {exc}") from exc
    source = _parse_source(url)
    return _frames(
        source,
        target_fps=target_fps,
        stop=stop,
        reconnect=reconnect and source.live,
        backoff=backoff or Backoff(),
        on_reconnect=on_reconnect,
        options=_CaptureOptions(rtsp_transport, open_timeout_s, read_timeout_s),
        connect=connect,
    )


def is_live(url: str) -> bool:
    """Whether ``url`` is a live stream (``rtsp``/``rtsps``) rather than a file."""
    return urlsplit(url).scheme.lower() in LIVE_SCHEMES


def _parse_source(url: str) -> _Source:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in LIVE_SCHEMES:
        return _Source(url=url, target=url, live=True)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise SourceOpenError(f"file URL with a remote host is not supported: {mask_url(url)}")
        path = Path(unquote(parts.path))
    elif scheme == "":
        path = Path(url)
    else:
        raise SourceOpenError(
            f"unsupported source scheme {scheme!r} in {mask_url(url)}; "
            "use rtsp://, rtsps://, file:// or a path"
        )
    if not path.is_file():
        raise SourceOpenError(f"video file not found: {path}")
    return _Source(url=url, target=str(path), live=False)


def _open(
    source: _Source, options: _CaptureOptions, connect: Callable[[str], str] | None = None
) -> cv2.VideoCapture | None:
    """An opened capture, or None when it does not open (or its host does not resolve).

    Raises:
        SourceOpenError: ``connect`` refuses the source's address.
    """
    target = source.target
    if source.live and connect is not None:
        try:
            target = connect(source.url)
        except ValueError as exc:
            raise SourceOpenError(f"{mask_url(source.url)} refused: {exc}") from exc
        except OSError as exc:
            logger.warning("cannot resolve %s: %s", mask_url(source.url), exc)
            return None
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(options.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(options.read_timeout_s * 1000),
    ]  # fmt: skip
    if source.live:
        _use_rtsp_transport(options.rtsp_transport)
    cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
    if cap.isOpened():
        return cap
    cap.release()
    return None


def _use_rtsp_transport(transport: str) -> None:
    """Put ``rtsp_transport`` into OpenCV's FFmpeg options, which it reads from the environment
    when a capture opens. Process-wide: one transport per process (the decoder has one setting);
    other options an operator put there are kept."""
    with _env_lock:
        current = os.environ.get(_FFMPEG_OPTIONS_ENV)
        wanted = _with_transport(current, transport)
        if wanted != current:
            os.environ[_FFMPEG_OPTIONS_ENV] = wanted


#: FFmpeg options for live sources unless the operator set them: open without probing the
#: stream (the RTSP SDP describes it). Measured on a 10 fps RTSP stream: FFmpeg's default
#: probing took 2.8 s to open and then delivered the ~30 frames it had buffered as a burst,
#: timestamped on arrival; with these it opens in 0.12 s and frames arrive at the stream's
#: rate. (``fflags;nobuffer`` also drops what probing read: the first second of the stream.)
LIVE_FFMPEG_OPTIONS = {"probesize": "32", "analyzeduration": "0"}


def _with_transport(options: str | None, transport: str) -> str:
    """OpenCV's ``key;value|key;value`` FFmpeg options with ``rtsp_transport`` set and the
    :data:`LIVE_FFMPEG_OPTIONS` the operator's ``options`` do not set already."""
    pairs = [p for p in (options or "").split("|") if p and not p.startswith("rtsp_transport;")]
    given = {p.split(";", 1)[0] for p in pairs}
    defaults = [f"{k};{v}" for k, v in LIVE_FFMPEG_OPTIONS.items() if k not in given]
    return "|".join([*pairs, *defaults, f"rtsp_transport;{transport}"])


class _Sampler:
    """Keeps a frame when its stream time reaches the next tick of a ``target_fps`` grid."""

    def __init__(self, target_fps: float | None) -> None:
        self._target_fps = target_fps
        self._next_tick = 0

    def keep(self, stream_time_s: float) -> bool:
        if self._target_fps is None:
            return True
        tick = math.floor(stream_time_s * self._target_fps + 1e-6)
        if tick < self._next_tick:
            return False
        # Jump to the tick after this one: after a stall we resume on the grid, no burst.
        self._next_tick = tick + 1
        return True


def _frames(
    source: _Source,
    *,
    target_fps: float | None,
    stop: threading.Event,
    reconnect: bool,
    backoff: Backoff,
    on_reconnect: Callable[[int, float], None] | None,
    options: _CaptureOptions,
    connect: Callable[[str], str] | None = None,
) -> Iterator[Frame]:
    masked = mask_url(source.url)
    sampler = _Sampler(target_fps)
    seq = 0
    attempt = 0  # reconnect attempts since the last frame that arrived
    started = time.monotonic()
    cap: cv2.VideoCapture | None = None
    fps: float | None = None
    try:
        while not stop.is_set():
            if cap is None:
                if attempt > 0:
                    delay = backoff.delay_s(attempt)
                    logger.warning(
                        "camera %s lost; reconnect attempt %d in %.2f s", masked, attempt, delay,
                        extra={"camera_url": masked, "attempt": attempt, "delay_s": delay},
                    )  # fmt: skip
                    if on_reconnect is not None:
                        on_reconnect(attempt, delay)
                    if stop.wait(delay):
                        return
                cap = _open(source, options, connect)
                if cap is None:
                    if not reconnect:
                        raise SourceOpenError(f"cannot open {masked}")
                    attempt += 1
                    continue
                fps = _stream_fps(cap)
                logger.info(
                    "opened %s (%s fps)", masked, f"{fps:g}" if fps else "unknown",
                    extra={"camera_url": masked},
                )  # fmt: skip
            if not cap.grab():
                cap.release()
                cap = None
                if not reconnect:
                    logger.info("end of stream %s after %d frames", masked, seq)
                    return
                attempt += 1
                continue
            capture_ts_ns = time.time_ns()
            attempt = 0
            if fps:
                stream_time_s = seq / fps
            elif source.live:
                stream_time_s = time.monotonic() - started
            else:
                stream_time_s = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if sampler.keep(stream_time_s):
                ok, image = cap.retrieve()
                if ok:
                    yield Frame(seq=seq, image=image, capture_ts_ns=capture_ts_ns)
                else:
                    logger.warning("frame %d of %s did not decode; skipped", seq, masked)
            seq += 1
    finally:
        if cap is not None:
            cap.release()


def _stream_fps(cap: cv2.VideoCapture) -> float | None:
    """The frame rate the stream reports, or None when absent or implausible."""
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    return fps if 0 < fps <= 240 else None
