"""The agents page: superadmins see every agent (host, capacity, cameras, last heartbeat,
live or lost) and every camera's status; a client's users see their cameras' status only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.dashboard import camera_status, cameras
from services.dashboard.deps import CurrentUser, ResourcesDep, SessionDep
from services.dashboard.pages.render import render
from vidpipe.agent_status import LIVE_WITHIN_S, LOST_AFTER_S

router = APIRouter()


@router.get("/agents", summary="Agents page")
def agents_page(
    request: Request, user: CurrentUser, conn: SessionDep, resources: ResourcesDep
) -> Response:
    shown = camera_status.overview(resources.redis, user, cameras.list_cameras(conn, user))
    return render(
        request,
        "agents.html",
        user,
        overview=shown,
        lost_after_s=LOST_AFTER_S,
        live_within_s=LIVE_WITHIN_S,
    )
