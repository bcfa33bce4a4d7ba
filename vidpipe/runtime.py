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


def serve_metrics(port: int | None) -> None:
    """Expose Prometheus metrics on 127.0.0.1:``port`` when a port is configured."""
    if port is not None:
        start_http_server(port, addr="127.0.0.1")
        log.info("prometheus metrics on http://127.0.0.1:%d/metrics", port)
