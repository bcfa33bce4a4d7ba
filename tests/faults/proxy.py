"""A TCP proxy for outages: put it between a service and a dependency (S3, MLflow, Redis,
Postgres) and ``cut()`` it to make the dependency unreachable without stopping it (the
local Kafka broker keeps its topics in SeaweedFS, so SeaweedFS itself must stay up).

The proxy runs its own asyncio loop in a daemon thread, so synchronous tests and the
services' own loops are unaffected::

    with TcpProxy("127.0.0.1", 6379) as proxy:        # listens on proxy.port
        ...  # point the service at 127.0.0.1:{proxy.port}
        proxy.cut()       # open connections are closed, new ones closed on accept
        proxy.restore()   # connections are forwarded again
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` (a free port) to ``target_host:target_port``.

    ``connections`` counts accepted connections, ``refused`` those closed because the proxy
    was cut. Start with :meth:`start` (or ``with``); stop with :meth:`stop`.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self.refused = 0
        self._cut = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> TcpProxy:
        """Listen on a free loopback port (:attr:`port`); returns ``self``."""
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        """Close the listener and every connection, end the thread."""
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Make the target unreachable: close open connections (both sides see a reset
        or EOF), close every new connection at once."""
        self._cut = True
        self._call(self._close_all())
        log.info("proxy to %s:%d cut", *self.target)

    def restore(self) -> None:
        """Forward new connections again."""
        self._cut = False
        log.info("proxy to %s:%d restored", *self.target)

    @property
    def url_host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._close_all()

    async def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._cut:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.write_eof()
