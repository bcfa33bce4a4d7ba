"""Newest-frame-wins hand-off from the reader thread to the event loop.

The reader must never wait on a slow consumer: while it waits, the camera's stream piles up
in FFmpeg's and the kernel's buffers, and every later frame is grabbed (and timestamped)
late, invisibly. So the reader offers each frame and returns at once; when ``capacity``
frames are already waiting, the oldest is dropped and counted, and the newest kept.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestFrames(Generic[T]):
    """A bounded buffer owned by one event loop: :meth:`offer` from any thread, :meth:`get`
    on the loop. ``on_drop(item)`` is called (on the loop) for every item pushed out."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capacity: int = 2,
        on_drop: Callable[[T], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._loop = loop
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._ready = asyncio.Event()
        self._on_drop = on_drop
        self.dropped = 0

    def offer(self, item: T) -> None:
        """Hand ``item`` to the loop without waiting (thread-safe)."""
        self._loop.call_soon_threadsafe(self._put, item)

    def offer_last(self, item: T) -> None:
        """Like :meth:`offer`, but ``item`` is never dropped (an end-of-stream marker)."""
        self._loop.call_soon_threadsafe(self._put, item, True)

    def _put(self, item: T, keep: bool = False) -> None:
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
        return self._items.popleft()

    def clear(self) -> None:
        """Forget whatever waits (on the loop)."""
        self._items.clear()
