"""The agent's heartbeat: an :class:`~vidpipe.events.AgentHeartbeat` every few seconds on
``agents.status.v1`` (key = agent id), with every owned camera's status and its rates over
the interval since the previous heartbeat (frames per second, from the stream's counters).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import socket
import time
from collections.abc import Iterable

from prometheus_client import Gauge

from services.agent.owned import CameraReport
from vidpipe.events import AgentHeartbeat, CameraState, CameraStatus
from vidpipe.ids import is_valid_id

log = logging.getLogger(__name__)

CAMERAS = Gauge("vidpipe_agent_cameras", "Cameras this agent owns, per state", ["state"])
STATES: tuple[CameraState, ...] = (
    "starting",
    "streaming",
    "reconnecting",
    "failed",
    "stopped",
    "unassigned",
)


def default_agent_id(host: str | None = None, pid: int | None = None) -> str:
    """``{host}-{pid}`` reduced to :data:`vidpipe.ids.ID_RULE` (other characters become
    ``-``, at most 64 characters, the pid kept)."""
    suffix = f"-{pid or os.getpid()}"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", host or socket.gethostname()).lstrip("_.-") or "agent"
    agent_id = name[: 64 - len(suffix)] + suffix
    assert is_valid_id(agent_id), agent_id
    return agent_id


def vidpipe_version() -> str:
    """The installed vidpipe distribution's version (``0+unknown`` when not installed)."""
    try:
        return importlib.metadata.version("vidpipe")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class Heartbeats:
    """Builds an agent's heartbeats; remembers each camera's counters of the last one to
    turn them into rates (a new session starts from zero)."""

    def __init__(
        self, agent_id: str, host: str, version: str, capacity: int, started_ts_ns: int
    ) -> None:
        self.agent_id = agent_id
        self._host = host[:255]
        self._version = version[:64]
        self._capacity = capacity
        self._started_ts_ns = started_ts_ns
        self._last: dict[tuple[str, str], tuple[str | None, int, int, int]] = {}

    def build(
        self,
        reports: Iterable[CameraReport],
        partitions: Iterable[int],
        now_ns: int | None = None,
        stopping: bool = False,
    ) -> AgentHeartbeat:
        """The heartbeat at ``now_ns`` (ns since epoch) of ``reports`` (rates filled in)."""
        now_ns = now_ns or time.time_ns()
        cameras = []
        last: dict[tuple[str, str], tuple[str | None, int, int, int]] = {}
        for report in reports:
            status = report.status
            key = (status.client_id, status.camera_id)
            counts = (status.session_id, report.frames_read, status.frames_published, now_ns)
            last[key] = counts
            before = self._last.get(key)
            if (before is None or before[0] != status.session_id) and report.session_started_ns:
                before = (status.session_id, 0, 0, report.session_started_ns)  # since its start
            cameras.append(self._with_rates(status, counts, before))
        self._last = last
        beat = AgentHeartbeat(
            agent_id=self.agent_id,
            host=self._host,
            version=self._version,
            capacity=self._capacity,
            started_ts_ns=self._started_ts_ns,
            sent_ts_ns=now_ns,
            partitions=tuple(sorted(partitions)),
            cameras=tuple(cameras),
            stopping=stopping,
        )
        for state in STATES:
            CAMERAS.labels(state).set(sum(1 for c in beat.cameras if c.state == state))
        return beat

    @staticmethod
    def _with_rates(
        status: CameraStatus,
        now: tuple[str | None, int, int, int],
        before: tuple[str | None, int, int, int] | None,
    ) -> CameraStatus:
        session, read, published, now_ns = now
        if before is None or before[0] != session or session is None:
            return status  # no interval yet in this session
        elapsed_s = (now_ns - before[3]) / 1e9
        if elapsed_s <= 0:
            return status
        return status.model_copy(
            update={
                "input_fps": round(max(0, read - before[1]) / elapsed_s, 3),
                "output_fps": round(max(0, published - before[2]) / elapsed_s, 3),
            }
        )
