"""One model at a time, on-demand requests first.

The detector runs camera frames and on-demand requests in one process on one model cache.
Model calls go through :class:`InferenceGate`: one call at a time (the device and its
threads are shared; two concurrent calls would only slow each other), and a request waiting
for the gate goes before every waiting frame chunk. A frame chunk already running is not
stopped, so a request waits at most one chunk's model time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class InferenceGate:
    """Serializes model calls; :meth:`urgent` callers overtake :meth:`normal` ones."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._urgent_waiting = 0
        self._no_urgent = asyncio.Event()
        self._no_urgent.set()

    @property
    def urgent_waiting(self) -> int:
        """Urgent callers waiting for or holding the gate."""
        return self._urgent_waiting

    @asynccontextmanager
    async def urgent(self) -> AsyncIterator[None]:
        """Hold the gate for an on-demand request."""
        self._urgent_waiting += 1
        self._no_urgent.clear()
        try:
            async with self._lock:
                yield
        finally:
            self._urgent_waiting -= 1
            if self._urgent_waiting == 0:
                self._no_urgent.set()

    @asynccontextmanager
    async def normal(self) -> AsyncIterator[None]:
        """Hold the gate for camera frames, once no urgent caller waits."""
        while True:
            await self._no_urgent.wait()
            await self._lock.acquire()
            if self._urgent_waiting == 0:
                break
            self._lock.release()  # an urgent caller arrived while we queued for the lock
        try:
            yield
        finally:
            self._lock.release()
