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
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict
from redis import Redis
from redis import asyncio as aioredis

from vidpipe.events import AgentHeartbeat, CameraStatus

#: Seconds between heartbeats (agents send; the sink does not check).
HEARTBEAT_S = 5.0
#: An agent silent this long (s) is shown as lost (three heartbeats missed).
LOST_AFTER_S = 15.0
#: Seconds a status key lives after its last heartbeat.
RETENTION_S = 3600
#: The "Live" badge: a camera's last frame is at most this old (s).
LIVE_WITHIN_S = 5.0

_AGENTS = "vidpipe:agents"
_AGENT = "vidpipe:agent:"
_CAMERAS = "vidpipe:camera-status:"


class CameraView(BaseModel):
    """A camera's last reported status, with who reported it and when (ns since epoch)."""

    model_config = ConfigDict(frozen=True)

    agent_id: str
    host: str
    sent_ts_ns: int
    status: CameraStatus

    def state(self, now_ns: int | None = None) -> str:
        """The reported state, or ``unknown`` when the reporting agent is lost."""
        return "unknown" if _lost(self.sent_ts_ns, now_ns) else self.status.state

    def frame_age_s(self, now_ns: int | None = None) -> float | None:
        """Seconds since the last frame was captured, or None when none was."""
        last = self.status.last_capture_ts_ns
        if last is None:
            return None
        return max(0.0, ((now_ns or time.time_ns()) - last) / 1e9)

    def live(self, now_ns: int | None = None) -> bool:
        """Whether the last frame is younger than :data:`LIVE_WITHIN_S` (the "Live" badge)."""
        age = self.frame_age_s(now_ns)
        return age is not None and age <= LIVE_WITHIN_S and self.state(now_ns) == "streaming"


@dataclass(frozen=True)
class AgentView:
    """An agent's last heartbeat and whether it is lost (silent > :data:`LOST_AFTER_S`)."""

    heartbeat: AgentHeartbeat
    lost: bool

    @property
    def age_s(self) -> float:
        return max(0.0, (time.time_ns() - self.heartbeat.sent_ts_ns) / 1e9)


def _lost(sent_ts_ns: int, now_ns: int | None = None) -> bool:
    return ((now_ns or time.time_ns()) - sent_ts_ns) / 1e9 > LOST_AFTER_S


async def record_heartbeat(redis: aioredis.Redis, beat: AgentHeartbeat) -> None:
    """Store ``beat`` as its agent's status and each of its cameras' (status sink side).

    A heartbeat older than the agent's stored one is ignored (a replay after a restart of the
    sink). A clean stop (``stopping``) removes the agent's cameras it still reported.

    Raises:
        redis.exceptions.RedisError: Redis unreachable (the sink retries).
    """
    last = await redis.zscore(_AGENTS, beat.agent_id)
    if last is not None and int(last) > beat.sent_ts_ns:
        return
    pipe = redis.pipeline(transaction=True)
    pipe.zadd(_AGENTS, {beat.agent_id: beat.sent_ts_ns})
    pipe.set(_AGENT + beat.agent_id, beat.model_dump_json(), ex=RETENTION_S)
    for camera in beat.cameras:
        key = _CAMERAS + camera.client_id
        view = CameraView(
            agent_id=beat.agent_id, host=beat.host, sent_ts_ns=beat.sent_ts_ns, status=camera
        )
        pipe.hset(key, camera.camera_id, view.model_dump_json())
        pipe.expire(key, RETENTION_S)
    await pipe.execute()


def list_agents(redis: Redis, now_ns: int | None = None) -> list[AgentView]:
    """Every agent heard from within :data:`RETENTION_S`, newest heartbeat first.

    Raises:
        redis.exceptions.RedisError: Redis unreachable.
    """
    now_ns = now_ns or time.time_ns()
    redis.zremrangebyscore(_AGENTS, "-inf", now_ns - RETENTION_S * 1_000_000_000)
    ids = [i.decode() if isinstance(i, bytes) else i for i in redis.zrevrange(_AGENTS, 0, -1)]
    views = []
    for raw in redis.mget([_AGENT + agent_id for agent_id in ids]) if ids else []:
        if raw is None:
            continue
        beat = AgentHeartbeat.model_validate_json(raw)
        views.append(AgentView(beat, _lost(beat.sent_ts_ns, now_ns)))
    return views


def camera_statuses(redis: Redis, client_id: str) -> dict[str, CameraView]:
    """Camera id -> last reported status, for one client's cameras.

    Raises:
        redis.exceptions.RedisError: Redis unreachable.
    """
    raw = redis.hgetall(_CAMERAS + client_id)
    return {
        (k.decode() if isinstance(k, bytes) else k): CameraView.model_validate_json(v)
        for k, v in raw.items()
    }


def camera_status(redis: Redis, client_id: str, camera_id: str) -> CameraView | None:
    """One camera's last reported status, or None when no agent reported it.

    Raises:
        redis.exceptions.RedisError: Redis unreachable.
    """
    raw = redis.hget(_CAMERAS + client_id, camera_id)
    return None if raw is None else CameraView.model_validate_json(raw)


def forget_camera(redis: Redis, client_id: str, camera_id: str) -> None:
    """Drop a deleted camera's status (the dashboard's delete does this)."""
    redis.hdel(_CAMERAS + client_id, camera_id)
