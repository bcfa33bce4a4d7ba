"""Agents and cameras' live status (:mod:`services.dashboard.camera_status`)."""

from __future__ import annotations

from fastapi import APIRouter

from services.dashboard import camera_status, cameras
from services.dashboard.camera_status import AgentsOut
from services.dashboard.deps import CurrentUser, ResourcesDep, SessionDep

router = APIRouter(tags=["agents"])


@router.get(
    "/agents",
    summary="Camera agents and the live status of your cameras",
    description="Superadmins: every agent (host, version, capacity, last heartbeat, lost,"
    " partitions, cameras) and every camera's status. A client's users: their own cameras'"
    " status only (state, host of the agent running it, fps, last frame age, reconnects,"
    " last error); `agents` is empty.",
)
def list_agents(user: CurrentUser, conn: SessionDep, resources: ResourcesDep) -> AgentsOut:
    return camera_status.overview(resources.redis, user, cameras.list_cameras(conn, user))
