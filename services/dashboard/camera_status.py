"""Cameras' live status and the agents that run them, as the dashboard shows them: read
from the status store (:mod:`vidpipe.agent_status`, Redis) and joined to the caller's
cameras from Postgres.

Tenancy: a client's users read their own client's status hash only, so they learn the host
of the agent running each of *their* cameras and nothing of agents' other cameras; the
agents themselves (hosts, capacity, partitions, every camera they run) are for superadmins.

The status is a convenience, never a reason to fail a page: when Redis cannot be read the
statuses are null (``unknown`` on the pages) and a warning is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, Field, ValidationError
from redis import Redis
from redis.exceptions import RedisError

from services.dashboard.auth import Principal
from vidpipe import agent_status
from vidpipe.agent_status import CameraView, ShownState
from vidpipe.cameras import Camera

log = logging.getLogger(__name__)

#: What :func:`read_statuses` returns: (client_id, camera_id) -> view, or None (unreadable).
Statuses = dict[tuple[str, str], CameraView]


class CameraStatusOut(BaseModel):
    """A camera's last reported status. Rates in frames per second, ages in seconds (now
    minus the agent's timestamp); ``live``: the "Live" badge (:meth:`CameraView.live`)."""

    state: ShownState = Field(description="unknown: the reporting agent is lost")
    session_id: str | None
    input_fps: float
    output_fps: float
    frame_age_s: float | None = Field(description="age of the last frame; null: none yet")
    live: bool
    reconnects: int
    restarts: int
    last_error: str | None
    agent_id: str
    host: str
    reported_age_s: float = Field(description="age of the heartbeat that reported this")

    @classmethod
    def of(cls, view: CameraView, now_ns: int) -> CameraStatusOut:
        status = view.status
        return cls(
            state=view.state(now_ns),
            session_id=status.session_id,
            input_fps=status.input_fps,
            output_fps=status.output_fps,
            frame_age_s=view.frame_age_s(now_ns),
            live=view.live(now_ns),
            reconnects=status.reconnects,
            restarts=status.restarts,
            last_error=status.last_error,
            agent_id=view.agent_id,
            host=view.host,
            reported_age_s=view.report_age_s(now_ns),
        )


class CameraOut(Camera):
    """A camera with its live status (null: no agent reported it, or unreadable)."""

    status: CameraStatusOut | None = None


class CameraStatusRow(BaseModel):
    """One of the caller's cameras and its status (``state`` is ``unknown`` without one)."""

    client_id: str
    camera_id: str
    name: str | None
    enabled: bool
    state: ShownState
    status: CameraStatusOut | None


class AgentCameraOut(BaseModel):
    """A camera as its agent's last heartbeat lists it."""

    client_id: str
    camera_id: str
    state: str
    session_id: str | None
    input_fps: float
    output_fps: float
    reconnects: int
    last_error: str | None


class AgentOut(BaseModel):
    """An agent (superadmins only). ``last_heartbeat_age_s``: seconds since it was sent."""

    agent_id: str
    host: str
    version: str
    capacity: int
    state: agent_status.AgentState
    lost: bool
    started_at: datetime
    last_heartbeat_at: datetime
    last_heartbeat_age_s: float
    partitions: list[int]
    cameras: list[AgentCameraOut]


class AgentsOut(BaseModel):
    """``agents``: every agent for a superadmin, empty for a client's users; ``cameras``:
    the caller's cameras (a superadmin's: every client's) with their status;
    ``available``: False when the status store could not be read (statuses unknown)."""

    agents: list[AgentOut]
    cameras: list[CameraStatusRow]
    available: bool


def read_statuses(redis: Redis, client_ids: Iterable[str]) -> Statuses | None:
    """The reported status of every camera of ``client_ids``; None when Redis cannot be
    read (logged as a warning)."""
    found: Statuses = {}
    try:
        for client_id in sorted(set(client_ids)):
            views = agent_status.camera_statuses(redis, client_id)
            found.update(((client_id, camera_id), v) for camera_id, v in views.items())
    except (RedisError, ValidationError) as exc:
        log.warning("camera status unavailable: %s", exc)
        return None
    return found


def with_status(
    cameras: Sequence[Camera], statuses: Statuses | None, now_ns: int | None = None
) -> list[CameraOut]:
    """``cameras`` with their status from ``statuses`` (null where none)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    found = statuses or {}
    out = []
    for camera in cameras:
        view = found.get((camera.client_id, camera.camera_id))
        status = None if view is None else CameraStatusOut.of(view, now_ns)
        out.append(CameraOut(**camera.model_dump(), status=status))
    return out


def cameras_with_status(redis: Redis, cameras: Sequence[Camera]) -> list[CameraOut]:
    """``cameras`` with their status read from Redis (null for all when it is down)."""
    return with_status(cameras, read_statuses(redis, {c.client_id for c in cameras}))


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def agent_out(agent: agent_status.AgentView, now_ns: int) -> AgentOut:
    beat = agent.heartbeat
    return AgentOut(
        agent_id=beat.agent_id,
        host=beat.host,
        version=beat.version,
        capacity=beat.capacity,
        state=agent.state,
        lost=agent.lost,
        started_at=_ts(beat.started_ts_ns),
        last_heartbeat_at=_ts(beat.sent_ts_ns),
        last_heartbeat_age_s=max(0.0, (now_ns - beat.sent_ts_ns) / 1e9),
        partitions=list(beat.partitions),
        cameras=[
            AgentCameraOut(
                client_id=c.client_id,
                camera_id=c.camera_id,
                state=c.state,
                session_id=c.session_id,
                input_fps=c.input_fps,
                output_fps=c.output_fps,
                reconnects=c.reconnects,
                last_error=c.last_error,
            )
            for c in beat.cameras
        ],
    )


def overview(redis: Redis, principal: Principal, cameras: Sequence[Camera]) -> AgentsOut:
    """What ``GET /api/v1/agents`` answers: agents (superadmins only) and the status of
    ``cameras`` (the caller's own, already scoped)."""
    now_ns = time.time_ns()
    statuses = read_statuses(redis, {c.client_id for c in cameras})
    agents: list[AgentOut] = []
    available = statuses is not None
    if principal.is_superadmin:
        try:
            agents = [agent_out(a, now_ns) for a in agent_status.list_agents(redis, now_ns)]
        except (RedisError, ValidationError) as exc:
            log.warning("agents unavailable: %s", exc)
            available = False
    rows = [
        CameraStatusRow(
            client_id=c.client_id,
            camera_id=c.camera_id,
            name=c.name,
            enabled=c.enabled,
            state=c.status.state if c.status else "unknown",
            status=c.status,
        )
        for c in with_status(cameras, statuses, now_ns)
    ]
    return AgentsOut(agents=agents, cameras=rows, available=available)


def forget(redis: Redis, client_id: str, camera_id: str) -> None:
    """Drop a deleted camera's status; a Redis failure is logged (the agent's next
    heartbeats without the camera remove it anyway)."""
    try:
        agent_status.forget_camera(redis, client_id, camera_id)
    except RedisError as exc:
        log.warning(
            "status of deleted camera not forgotten: %s",
            exc,
            extra={"client_id": client_id, "camera_id": camera_id},
        )
