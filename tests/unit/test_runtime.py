from __future__ import annotations

import socket
import urllib.request

from vidpipe.bus import DEAD_LETTERS
from vidpipe.runtime import serve_metrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_metrics_when_port_free_then_exposes_vidpipe_counters() -> None:
    port = free_port()
    DEAD_LETTERS.labels("test", "frames.decoded.v1", "invalid_event").inc()
    assert serve_metrics(port)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'vidpipe_dead_letters_total{error_type="invalid_event",service="test"' in body


def test_serve_metrics_when_port_taken_then_service_goes_on() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert serve_metrics(sock.getsockname()[1]) is False
    assert serve_metrics(None) is False
