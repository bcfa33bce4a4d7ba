"""Hand-off from the reader thread to the event loop: newest frame wins for live sources.

A live reader must never wait on a slow consumer: while it waits, the camera's stream piles
up in FFmpeg's and the kernel's buffers, and every later frame is grabbed (and timestamped)
late, invisibly. So it :meth:`~LatestFrames.offer`\\s each frame and returns at once; when
``capacity`` frames are already waiting, the oldest is dropped and counted, and the newest
kept. A file has no clock to fall behind: with ``lossless`` its reader
:meth:`~LatestFrames.put`\\s and waits for room instead, and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestFrames(Generic[T]):
    """A bounded buffer owned by one event loop: :meth:`offer` / :meth:`put` from the
    reader thread, :meth:`get` on the loop. ``on_drop(item)`` is called (on the loop) for
    every item pushed out."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capacity: int = 8,
        on_drop: Callable[[T], None] | None = None,
        lossless: bool = False,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._loop = loop
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._ready = asyncio.Event()
        self._on_drop = on_drop
        self._lossless = lossless
        self._room = threading.Semaphore(capacity)
        self.dropped = 0

    def offer(self, item: T) -> None:
        """Hand ``item`` to the loop without waiting (thread-safe; live sources)."""
        self._loop.call_soon_threadsafe(self._put, item, False)

    def put(self, item: T, stop: threading.Event) -> bool:
        """Hand ``item`` over once there is room, waiting for it (thread-safe, not from the
        loop; a ``lossless`` buffer). Returns False, handing nothing over, when ``stop`` is
        set meanwhile."""
        while not self._room.acquire(timeout=0.1):
            if stop.is_set():
                return False
        self._loop.call_soon_threadsafe(self._put, item, True)
        return True

    def offer_last(self, item: T) -> None:
        """Hand ``item`` over without waiting and never drop it (an end-of-stream marker)."""
        self._loop.call_soon_threadsafe(self._put, item, True)

    def _put(self, item: T, keep: bool) -> None:
        if not keep:
            while len(self._items) >= self._capacity:
                old = self._items.popleft()
                self.dropped += 1
                if self._on_drop is not None:
                    self._on_drop(old)
        self._items.append(item)
        self._ready.set()

    async def get(self) -> T:
        """The oldest item still waiting (waits for one)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        if self._lossless:
            self._room.release()
        return self._items.popleft()

    def clear(self) -> None:
        """Forget whatever waits (on the loop)."""
        self._items.clear()
