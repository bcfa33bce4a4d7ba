"""A minimal TCP proxy for outage tests: put it between a client and Redis, Postgres or
MLflow, then cut or freeze the link without touching the shared service.

- ``cut()``: every open connection is reset and new ones are refused (closed at once): a
  service that is down or unreachable.
- ``freeze()``: connections are accepted and kept, but no byte passes either way: a service
  that hangs (SIGSTOP), the case only timeouts catch.
- ``restore()``: bytes flow again (held ones first, as after SIGCONT).

It runs its own event loop in a daemon thread, so blocking test code can drive it. (Written
here because the fault suite's shared proxy, ``tests/faults/proxy.py``, did not exist yet.)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Literal

Mode = Literal["open", "cut", "frozen"]
_CHUNK = 64 * 1024


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``; see the module doc."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._mode: Mode = "open"
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = self._call(self._start())

    @property
    def mode(self) -> Mode:
        return self._mode

    def cut(self) -> None:
        """Reset every connection and refuse new ones."""
        self._mode = "cut"
        self._call(self._abort_all())

    def freeze(self) -> None:
        """Keep connections open but pass nothing."""
        self._mode = "frozen"

    def restore(self) -> None:
        self._mode = "open"

    def close(self) -> None:
        self._mode = "cut"
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._abort_all()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.wait(others, timeout=1) if others else None  # they end once cut

    async def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while self._mode == "frozen":
            await asyncio.sleep(0.05)
        if self._mode == "cut":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(_CHUNK):
                while self._mode == "frozen":
                    await asyncio.sleep(0.05)
                if self._mode == "cut":
                    break
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
