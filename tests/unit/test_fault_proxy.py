"""The fault harness's TCP proxy (tests/faults/proxy.py) against a local echo server."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.faults.proxy import TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(payload)
        return conn.recv(1024)


def test_proxy_when_cut_then_refuses_and_closes_open_connections_until_restored(
    echo_port: int,
) -> None:
    with TcpProxy("127.0.0.1", echo_port) as proxy:
        assert _roundtrip(proxy.port, b"before") == b"before"
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        held.sendall(b"x")
        assert held.recv(16) == b"x"

        proxy.cut()

        with contextlib.suppress(ConnectionResetError):  # a reset also says: closed
            assert held.recv(16) == b""  # the open connection is closed under its user
        held.close()
        with pytest.raises(OSError):
            reply = _roundtrip(proxy.port, b"during")
            if not reply:
                raise ConnectionResetError("closed on accept")
        proxy.restore()
        assert _roundtrip(proxy.port, b"after") == b"after"
        assert proxy.refused >= 1
