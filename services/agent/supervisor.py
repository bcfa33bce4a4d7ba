"""One camera's decoder, supervised: every start opens a new stream session, a crash is
restarted with backoff, a crash loop or a refused source leaves the camera ``failed``.

The policy, in a few lines:

- a decoder that raises is restarted after ``restart_initial_s * 2 ** (n - 1)`` s (capped at
  ``restart_max_s``, with jitter), ``n`` the crashes within ``crash_window_s``;
- ``crash_limit`` crashes within ``crash_window_s``, or one :class:`StreamRefused` (the URL
  policy or a missing file: retrying at once cannot help), make the camera ``failed``: it is
  retried every ``failed_retry_s`` only, or at once on :meth:`CameraSupervisor.retry` (the
  agent calls it on the camera's next ``CameraChanged``); a session that published frames
  clears ``failed`` again;
- a stream that ends by itself (a file played to its end) is ``stopped`` until retried.

The supervisor does not know how a decoder is built: a :data:`Launch` callable makes a
:class:`Stream` for a camera and a session (see :mod:`services.agent.decoders`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tenacity import RetryCallState, Retrying, wait_exponential, wait_random

from vidpipe.events import CameraState
from vidpipe.sessions import new_session_id
from vidpipe.urls import mask_url

log = logging.getLogger(__name__)

#: A camera that delivered no frame for this long (s), or 3 frame intervals if longer, is
#: ``reconnecting``: FFmpeg blocks up to its 10 s read timeout on a stalled server before
#: the reader notices, and the status must say so sooner.
STALLED_MIN_S = 3.0
STALLED_INTERVALS = 3
#: Longest wait (s) for a decoder to stop before its task is cancelled.
STOP_TIMEOUT_S = 15.0


class StreamRefused(RuntimeError):
    """The source cannot be used as configured (URL policy, missing file): restarting
    cannot help, so the camera is ``failed`` at once."""


@dataclass(frozen=True)
class CameraSpec:
    """What a camera's decoder runs: identity, full URL (secrets included: log it only
    through :func:`vidpipe.urls.mask_url`), sampling rate in frames per second."""

    client_id: str
    camera_id: str
    url: str
    fps: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.client_id, self.camera_id)

    @property
    def name(self) -> str:
        return f"{self.client_id}/{self.camera_id}"


class StreamCounters(Protocol):
    """What a running stream counted so far (:class:`vidpipe.decoding.stream.StreamStats`).
    ``last_capture_ns``: ns since epoch of the last frame read, None before the first;
    ``started_ns``: ns since epoch when the stream (its session) started."""

    frames_read: int
    frames_published: int
    frames_skipped: int
    reconnects: int
    last_capture_ns: int | None
    reconnecting: bool
    started_ns: int


class Stream(Protocol):
    """One session of a camera's decoder."""

    @property
    def stats(self) -> StreamCounters: ...

    async def run(self, stop: asyncio.Event) -> int:
        """Decode until the source ends or ``stop`` is set; returns frames published.

        Raises:
            StreamRefused: the source cannot be used as configured.
        """
        ...


#: ``launch(spec, session_id)`` -> a stream ready to :meth:`Stream.run`.
Launch = Callable[[CameraSpec, str], Stream]


@dataclass(frozen=True)
class RestartPolicy:
    """How crashed decoders come back (seconds); see the module doc."""

    initial_s: float = 1.0
    max_s: float = 30.0
    jitter_s: float = 0.25
    crash_limit: int = 5
    crash_window_s: float = 60.0
    failed_retry_s: float = 60.0

    def delay_s(self, crashes: int) -> float:
        """Seconds before restart number ``crashes`` (1-based) of a crash series."""
        wait = wait_exponential(multiplier=self.initial_s, max=self.max_s) + wait_random(
            0, self.jitter_s
        )
        state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = max(1, crashes)
        return float(wait(state))


def stalled_after_s(fps: float) -> float:
    """Seconds without a frame after which a stream counts as stalled."""
    return max(STALLED_MIN_S, STALLED_INTERVALS / fps)


class CameraSupervisor:
    """Runs one camera's decoder in a task until :meth:`stop`; see the module doc.

    ``clock``: monotonic seconds (crash windows); states use ``time.time_ns`` passed in.
    """

    def __init__(
        self,
        spec: CameraSpec,
        launch: Launch,
        policy: RestartPolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self._launch = launch
        self._policy = policy
        self._clock = clock
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._crashes: deque[float] = deque()
        self.stream: Stream | None = None
        self.session_id: str | None = None
        self.starts = 0
        self.last_error: str | None = None
        self.failed = False
        self.finished = False
        self.backing_off = False

    @property
    def restarts(self) -> int:
        """Starts after the first (crash restarts, retries)."""
        return max(0, self.starts - 1)

    def start(self) -> None:
        """Start supervising (in a task of the running loop)."""
        self._task = asyncio.create_task(self._supervise(), name=f"camera {self.spec.name}")

    def retry(self) -> None:
        """Restart a ``failed`` or ended camera now instead of at its next slow retry."""
        if self.failed or self.finished or self.backing_off:
            self._wake.set()

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the decoder and wait for it (its last frames are published), cancelling it
        after ``timeout_s`` seconds."""
        self._stop.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.warning(
                "decoder of %s did not stop in %.0f s; cancelled", self.spec.name, timeout_s
            )
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    def state(self, now_ns: int | None = None) -> CameraState:
        """The camera's state now (see :class:`vidpipe.events.CameraStatus`)."""
        if self._stop.is_set() or self.finished:
            return "stopped"
        if self.backing_off:
            return "failed" if self.failed else "reconnecting"
        stats = self.stream.stats if self.stream is not None else None
        if stats is None or stats.last_capture_ns is None:
            if self.failed:  # a slow retry that has not delivered a frame yet
                return "failed"
            return "reconnecting" if stats is not None and stats.reconnecting else "starting"
        if stats.reconnecting:
            return "reconnecting"
        silent_s = ((now_ns or time.time_ns()) - stats.last_capture_ns) / 1e9
        return "reconnecting" if silent_s > stalled_after_s(self.spec.fps) else "streaming"

    async def _supervise(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self.session_id = new_session_id()
            self.starts += 1
            self.finished = False
            extra = {"camera_id": self.spec.camera_id, "client_id": self.spec.client_id}
            log.info(
                "decoder starting, session %s (%s, %g fps)",
                self.session_id, mask_url(self.spec.url), self.spec.fps, extra=extra,
            )  # fmt: skip
            try:
                stream = self._launch(self.spec, self.session_id)
                self.stream = stream
                await stream.run(self._stop)
            except Exception as exc:
                if self._stop.is_set():
                    break
                self._crashed(exc)
                delay = self._policy.failed_retry_s if self.failed else self._backoff_s()
                self.backing_off = True
                await self._pause(delay)
                self.backing_off = False
                continue
            if self._stop.is_set():
                break
            self.finished = True
            log.info("stream of %s ended; restarted on its next change", self.spec.name)
            await self._pause(None)

    def _crashed(self, exc: Exception) -> None:
        now = self._clock()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self._policy.crash_window_s:
            self._crashes.popleft()
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if self.stream is not None and self.stream.stats.frames_published > 0:
            self.failed = False  # it worked before this crash: a new crash series
        refused = isinstance(exc, StreamRefused)
        if refused or len(self._crashes) >= self._policy.crash_limit:
            self.failed = True
        extra = {"camera_id": self.spec.camera_id, "client_id": self.spec.client_id}
        if refused:
            log.error("camera %s refused: %s", self.spec.name, exc, extra=extra)
        else:
            log.error(
                "decoder of %s crashed (%d in %.0f s)%s",
                self.spec.name, len(self._crashes), self._policy.crash_window_s,
                ": failed, retried slowly" if self.failed else "",
                exc_info=exc, extra=extra,
            )  # fmt: skip

    def _backoff_s(self) -> float:
        return self._policy.delay_s(len(self._crashes))

    async def _pause(self, seconds: float | None) -> None:
        """Wait ``seconds`` (None: forever) or until stopped or retried."""
        waits = [asyncio.create_task(self._stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
