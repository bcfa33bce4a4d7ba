"""Process plumbing every service shares: one stop signal, Prometheus endpoint."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import start_http_server

log = logging.getLogger(__name__)


def install_stop_signal() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT: the process's single stop signal.

    Must be called from inside the running event loop.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def serve_metrics(port: int | None, addr: str = "127.0.0.1") -> bool:
    """Expose Prometheus metrics at ``http://addr:port/metrics`` when a port is configured.

    A port already in use (say, a second replica on the same host) is logged and skipped:
    metrics are worth less than the service. Returns whether the endpoint is up.
    """
    if port is None:
        return False
    try:
        start_http_server(port, addr=addr)
    except OSError as exc:
        log.warning("prometheus metrics not exposed on %s:%d: %s", addr, port, exc)
        return False
    log.info("prometheus metrics on http://%s:%d/metrics", addr, port)
    return True
