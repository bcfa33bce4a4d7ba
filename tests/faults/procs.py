"""Process control by pid for fault scenarios: kill, stall and resume a service."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator


def kill(pid: int) -> None:
    """SIGKILL ``pid`` (no clean-up runs: what a crash or the OOM killer does)."""
    os.kill(pid, signal.SIGKILL)


def stall(pid: int) -> None:
    """SIGSTOP ``pid``: every thread freezes (heartbeats too), sockets stay open."""
    os.kill(pid, signal.SIGSTOP)


def resume(pid: int) -> None:
    """SIGCONT ``pid`` after :func:`stall`."""
    os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def stalled(pid: int) -> Iterator[float]:
    """``pid`` frozen for the block, resumed after it (also when the block raises); yields
    the monotonic time the stall began."""
    stall(pid)
    try:
        yield time.monotonic()
    finally:
        resume(pid)


def is_stopped(pid: int) -> bool:
    """Whether ``pid`` is in the stopped state (``T`` in ``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"
