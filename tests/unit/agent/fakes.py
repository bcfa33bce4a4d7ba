"""Fake decoder streams for the agent's unit tests: each does what its camera's script says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.agent.supervisor import CameraSpec, StreamRefused


@dataclass
class FakeStats:
    frames_read: int = 0
    frames_published: int = 0
    frames_skipped: int = 0
    reconnects: int = 0
    last_capture_ns: int | None = None
    reconnecting: bool = False
    started_ns: int = field(default_factory=time.time_ns)


@dataclass
class FakeStream:
    """``behaviour``: ``run`` (until stopped), ``crash``, ``refuse``, ``end`` (a file that
    ended), ``frames-then-crash`` (publishes one frame, then crashes)."""

    spec: CameraSpec
    session_id: str
    behaviour: str
    stats: FakeStats = field(default_factory=FakeStats)
    running: bool = False
    stopped_at: float | None = None

    def frame(self, now_ns: int | None = None) -> None:
        self.stats.frames_read += 1
        self.stats.frames_published += 1
        self.stats.last_capture_ns = now_ns or time.time_ns()

    async def run(self, stop: asyncio.Event) -> int:
        self.running = True
        try:
            await asyncio.sleep(0)
            if self.behaviour == "crash":
                raise RuntimeError(f"decoder of {self.spec.camera_id} crashed")
            if self.behaviour == "refuse":
                raise StreamRefused("rtsp://10.0.0.1/x refused: loopback")
            if self.behaviour == "frames-then-crash":
                self.frame()
                raise RuntimeError("crashed after a frame")
            if self.behaviour == "end":
                return 0
            await stop.wait()
            await asyncio.sleep(0.01)  # publishing the last frames
            return self.stats.frames_published
        finally:
            self.running = False
            self.stopped_at = time.monotonic()


class FakeLaunch:
    """``launch(spec, session)`` -> a :class:`FakeStream`; ``behaviour(spec)`` picks what it
    does (default: runs until stopped). Every stream made is kept in ``streams``."""

    def __init__(self, behaviour: Callable[[CameraSpec], str] = lambda spec: "run") -> None:
        self.behaviour = behaviour
        self.streams: list[FakeStream] = []

    def __call__(self, spec: CameraSpec, session_id: str) -> FakeStream:
        stream = FakeStream(spec, session_id, self.behaviour(spec))
        self.streams.append(stream)
        return stream

    def of(self, camera_id: str) -> list[FakeStream]:
        return [s for s in self.streams if s.spec.camera_id == camera_id]


async def settle(seconds: float = 0.05) -> None:
    """Let supervisor tasks run."""
    await asyncio.sleep(seconds)
