""" "Try an image": upload a picture, watch its request's state change live over the
websocket (``static/requests.js``), see the boxes drawn, and the recent requests with their
timestamps."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.dashboard import detection_requests, tenancy
from services.dashboard.deps import CurrentUser, SessionDep
from services.dashboard.pages.render import render

router = APIRouter()
RECENT = 20


@router.get("/requests", summary="Try an image page")
def requests_page(request: Request, user: CurrentUser, conn: SessionDep) -> Response:
    page = detection_requests.list_requests(conn, tenancy.client_filter(user, None), RECENT, None)
    return render(
        request,
        "requests.html",
        user,
        requests=page.items,
        clients=tenancy.list_clients(conn, user) if user.is_superadmin else [],
    )
