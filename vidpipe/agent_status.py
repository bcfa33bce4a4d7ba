"""The live status of agents and their cameras: written by the status sink from agents'
heartbeats (:class:`~vidpipe.events.AgentHeartbeat`), read cheaply by the dashboard and API.

Layout in Redis (every key expires after :data:`RETENTION_S` without a heartbeat, so hosts
that are gone for good disappear):

    vidpipe:agents                       sorted set: agent id -> last heartbeat (sent_ts_ns)
    vidpipe:agent:{agent_id}             the agent's last heartbeat (JSON)
    vidpipe:camera-status:{client_id}    hash: camera id -> :class:`CameraView` (JSON)

The per-client hash is what keeps tenants apart: a client's users read their own hash,
which names the host of each of their cameras and nothing of other clients'. An agent silent
for :data:`LOST_AFTER_S` is *lost*; its cameras' reports are then stale and show as
``unknown`` until another agent picks them up (Kafka's session timeout, ~10 s later).

A camera's entry belongs to the agent that reported it last: when that agent stops
reporting the camera (the camera moved, was disabled and shut down, or the agent stopped
cleanly) the entry is removed, unless another agent has reported the camera since. The
status sink is the only writer (one partition, one consumer); the dashboard only deletes
(:func:`forget_camera`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict
from redis import Redis
from redis import asyncio as aioredis

from vidpipe.events import AgentHeartbeat, CameraState, CameraStatus

#: Seconds between heartbeats (agents send; the sink does not check).
HEARTBEAT_S = 5.0
#: An agent silent this long (s) is shown as lost (three heartbeats missed).
LOST_AFTER_S = 15.0
#: Seconds a status key lives after its last heartbeat.
RETENTION_S = 3600
#: The "Live" badge: a camera's last frame is at most this old (s) when its agent reports.
LIVE_WITHIN_S = 5.0
#: A report older than this (s) no longer vouches for "Live": one heartbeat missed.
FRESH_WITHIN_S = 2 * HEARTBEAT_S

#: What the dashboard shows for a camera: its agent's state, or ``unknown`` (no report, the
#: reporting agent lost, or the store unreadable).
ShownState = CameraState | Literal["unknown"]
SHOWN_STATES: tuple[str, ...] = (*get_args(CameraState), "unknown")
AgentState = Literal["live", "lost", "stopped"]
AGENT_STATES: tuple[str, ...] = get_args(AgentState)

_AGENTS = "vidpipe:agents"
_AGENT = "vidpipe:agent:"
_CAMERAS = "vidpipe:camera-status:"
_NS = 1_000_000_000


def _now(now_ns: int | None) -> int:
    return time.time_ns() if now_ns is None else now_ns


class CameraView(BaseModel):
    """A camera's last reported status, with who reported it and when (ns since epoch)."""

    model_config = ConfigDict(frozen=True)

    agent_id: str
    host: str
    sent_ts_ns: int
    status: CameraStatus

    def state(self, now_ns: int | None = None) -> ShownState:
        """The reported state, or ``unknown`` when the reporting agent is lost."""
        return "unknown" if _lost(self.sent_ts_ns, now_ns) else self.status.state

    def report_age_s(self, now_ns: int | None = None) -> float:
        """Seconds since the agent sent the report (0 for a clock ahead of ours)."""
        return max(0.0, (_now(now_ns) - self.sent_ts_ns) / _NS)

    def frame_age_s(self, now_ns: int | None = None) -> float | None:
        """Seconds since the last frame was captured, or None when none was."""
        last = self.status.last_capture_ts_ns
        if last is None:
            return None
        return max(0.0, (_now(now_ns) - last) / _NS)

    def live(self, now_ns: int | None = None) -> bool:
        """The "Live" badge: the agent reports ``streaming``, its last frame was at most
        :data:`LIVE_WITHIN_S` old when it reported, and the report is at most
        :data:`FRESH_WITHIN_S` old.

        The frame's age is taken at the report, on the agent's own clock: judged against
        our clock a frame ages up to a heartbeat (5 s) between two reports, so a healthy
        stream would blink out of "Live" before every heartbeat.
        """
        last = self.status.last_capture_ts_ns
        if last is None or self.state(now_ns) != "streaming":
            return False
        at_report = (self.sent_ts_ns - last) / _NS
        return at_report <= LIVE_WITHIN_S and self.report_age_s(now_ns) <= FRESH_WITHIN_S


@dataclass(frozen=True)
class AgentView:
    """An agent's last heartbeat and whether it is lost (silent > :data:`LOST_AFTER_S`)."""

    heartbeat: AgentHeartbeat
    lost: bool

    @property
    def age_s(self) -> float:
        """Seconds since the last heartbeat was sent."""
        return max(0.0, (time.time_ns() - self.heartbeat.sent_ts_ns) / _NS)

    @property
    def state(self) -> AgentState:
        """``stopped`` (its last heartbeat said so), ``lost`` or ``live``."""
        if self.heartbeat.stopping:
            return "stopped"
        return "lost" if self.lost else "live"


def _lost(sent_ts_ns: int, now_ns: int | None = None) -> bool:
    return (_now(now_ns) - sent_ts_ns) / _NS > LOST_AFTER_S


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def dropped_cameras(previous: AgentHeartbeat | None, beat: AgentHeartbeat) -> set[tuple[str, str]]:
    """``(client_id, camera_id)`` of the cameras the agent no longer reports with ``beat``:
    those of ``previous`` missing from ``beat``, and every one of both when ``beat`` is the
    last of a clean stop (``stopping``)."""
    before = {(c.client_id, c.camera_id) for c in previous.cameras} if previous else set()
    now = {(c.client_id, c.camera_id) for c in beat.cameras}
    return before | now if beat.stopping else before - now


async def record_heartbeat(redis: aioredis.Redis, beat: AgentHeartbeat) -> bool:
    """Store ``beat`` as its agent's status and each of its cameras' (status sink side).

    A heartbeat older than the agent's stored one is ignored (a replay after a restart of the
    sink). Cameras the agent no longer reports (:func:`dropped_cameras`; all of them on a
    clean stop) lose their entry, unless another agent reported them since. Returns whether
    ``beat`` was stored.

    Raises:
        redis.exceptions.RedisError: Redis unreachable (the sink retries).
    """
    raw = await redis.get(_AGENT + beat.agent_id)
    previous = None if raw is None else AgentHeartbeat.model_validate_json(raw)
    if previous is not None and previous.sent_ts_ns > beat.sent_ts_ns:
        return False
    dropped = sorted(dropped_cameras(previous, beat))
    owners: list[bytes | str | None] = []
    if dropped:
        reads = redis.pipeline(transaction=False)
        for client_id, camera_id in dropped:
            reads.hget(_CAMERAS + client_id, camera_id)
        owners = await reads.execute()
    pipe = redis.pipeline(transaction=True)
    pipe.zadd(_AGENTS, {beat.agent_id: beat.sent_ts_ns})
    pipe.set(_AGENT + beat.agent_id, beat.model_dump_json(), ex=RETENTION_S)
    for (client_id, camera_id), stored in zip(dropped, owners, strict=True):
        if stored is not None and CameraView.model_validate_json(stored).agent_id == beat.agent_id:
            pipe.hdel(_CAMERAS + client_id, camera_id)
    if not beat.stopping:
        for camera in beat.cameras:
            key = _CAMERAS + camera.client_id
            view = CameraView(
                agent_id=beat.agent_id, host=beat.host, sent_ts_ns=beat.sent_ts_ns, status=camera
            )
            pipe.hset(key, camera.camera_id, view.model_dump_json())
            pipe.expire(key, RETENTION_S)
    await pipe.execute()
    return True


def _agent_views(raws: Iterable[bytes | str | None], now_ns: int) -> list[AgentView]:
    views = []
    for raw in raws:
        if raw is None:  # expired between the two reads
            continue
        beat = AgentHeartbeat.model_validate_json(raw)
        views.append(AgentView(beat, _lost(beat.sent_ts_ns, now_ns)))
    return views


def list_agents(redis: Redis, now_ns: int | None = None) -> list[AgentView]:
    """Every agent heard from within :data:`RETENTION_S`, newest heartbeat first.

    Raises:
        redis.exceptions.RedisError: Redis unreachable.
    """
    now_ns = _now(now_ns)
    redis.zremrangebyscore(_AGENTS, "-inf", now_ns - RETENTION_S * _NS)
    ids = [_text(i) for i in redis.zrevrange(_AGENTS, 0, -1)]
    return _agent_views(redis.mget([_AGENT + i for i in ids]) if ids else [], now_ns)


async def read_agents(redis: aioredis.Redis, now_ns: int | None = None) -> list[AgentView]:
    """:func:`list_agents` for asyncio callers (the status sink's gauges).

    Raises:
        redis.exceptions.RedisError: Redis unreachable.
    """
    now_ns = _now(now_ns)
    await redis.zremrangebyscore(_AGENTS, "-inf", now_ns - RETENTION_S * _NS)
    ids = [_text(i) for i in await redis.zrevrange(_AGENTS, 0, -1)]
    return _agent_views(await redis.mget([_AGENT + i for i in ids]) if ids else [], now_ns)


def agent_census(agents: Iterable[AgentView]) -> Counter[str]:
    """How many agents are in each of :data:`AGENT_STATES` (absent states count 0)."""
    counts: Counter[str] = Counter(dict.fromkeys(AGENT_STATES, 0))
    counts.update(agent.state for agent in agents)
    return counts


def camera_census(agents: Sequence[AgentView], now_ns: int | None = None) -> Counter[str]:
    """How many cameras are in each of :data:`SHOWN_STATES`, across agents' last heartbeats.

    A camera two agents report (it moved) counts once, as the newest heartbeat has it; the
    cameras of a lost agent count as ``unknown``; a stopped agent reports none.
    """
    newest: dict[tuple[str, str], tuple[int, ShownState]] = {}
    for agent in agents:
        beat = agent.heartbeat
        if beat.stopping:
            continue
        for camera in beat.cameras:
            key = (camera.client_id, camera.camera_id)
            state: ShownState = "unknown" if _lost(beat.sent_ts_ns, now_ns) else camera.state
            if key not in newest or newest[key][0] < beat.sent_ts_ns:
                newest[key] = (beat.sent_ts_ns, state)
    counts: Counter[str] = Counter(dict.fromkeys(SHOWN_STATES, 0))
    counts.update(state for _, state in newest.values())
    return counts


def camera_statuses(redis: Redis, client_id: str) -> dict[str, CameraView]:
    """Camera id -> last reported status, for one client's cameras.

    Raises:
        redis.exceptions.RedisError: Redis unreachable.
    """
    raw = redis.hgetall(_CAMERAS + client_id)
    return {_text(k): CameraView.model_validate_json(v) for k, v in raw.items()}


def camera_status(redis: Redis, client_id: str, camera_id: str) -> CameraView | None:
    """One camera's last reported status, or None when no agent reported it.

    Raises:
        redis.exceptions.RedisError: Redis unreachable.
    """
    raw = redis.hget(_CAMERAS + client_id, camera_id)
    return None if raw is None else CameraView.model_validate_json(raw)


def forget_camera(redis: Redis, client_id: str, camera_id: str) -> None:
    """Drop a deleted camera's status (the dashboard's delete does this).

    Raises:
        redis.exceptions.RedisError: Redis unreachable.
    """
    redis.hdel(_CAMERAS + client_id, camera_id)
