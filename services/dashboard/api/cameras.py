"""Cameras, their latest result, clips and a live stream of results (SSE). Listing storage is
throttled per caller, and a caller holds at most a few live streams at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from services.dashboard import camera_status, cameras, results
from services.dashboard.camera_status import CameraOut
from services.dashboard.cameras import CameraIn
from services.dashboard.deps import (
    CurrentUser,
    Expensive,
    OperatorUser,
    ResourcesDep,
    SessionDep,
)
from services.dashboard.resources import LIVE_MAX_S
from services.dashboard.results import CameraResult, Clip
from services.dashboard.throttle import caller_key
from vidpipe.cameras import Camera, CameraFields
from vidpipe.ids import ID_PATTERN

router = APIRouter(tags=["cameras"])
CameraId = Annotated[str, Path(pattern=ID_PATTERN)]
#: camera ids are unique per client: a superadmin names the client when several use the id
CameraClient = Annotated[
    str | None,
    Query(
        alias="client_id",
        pattern=ID_PATTERN,
        description="superadmins: the camera's client (needed when several clients use the id)",
    ),
]


def visible_camera(
    user: CurrentUser, conn: SessionDep, camera_id: CameraId, client: CameraClient = None
) -> Camera:
    """The camera, checked before a response starts (a stream cannot turn into a 404)."""
    return cameras.get_camera(conn, user, camera_id, client)


VisibleCamera = Annotated[Camera, Depends(visible_camera)]


async def live_slot(user: CurrentUser, resources: ResourcesDep) -> AsyncIterator[None]:
    """Hold one of the caller's live-stream slots while the stream runs (429 when all are
    taken); taken before the response starts, released after it ends."""
    who = caller_key(user)
    token = await anyio.to_thread.run_sync(resources.live_slots.acquire, who)
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(resources.live_slots.release, who, token)


@router.get("/cameras")
def list_cameras(
    user: CurrentUser,
    conn: SessionDep,
    resources: ResourcesDep,
    client_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> list[CameraOut]:
    """The caller's cameras, each with its live ``status`` (null: not reported)."""
    return camera_status.cameras_with_status(
        resources.redis, cameras.list_cameras(conn, user, client_id)
    )


@router.post("/cameras", status_code=status.HTTP_201_CREATED)
def create_camera(
    user: OperatorUser, conn: SessionDep, resources: ResourcesDep, body: CameraIn
) -> Camera:
    return cameras.create_camera(conn, resources.url_rules, resources.publisher, user, body)


@router.get("/cameras/{camera_id}")
def get_camera(camera: VisibleCamera, resources: ResourcesDep) -> CameraOut:
    """The camera with its live ``status`` (null: no agent reported it)."""
    [found] = camera_status.cameras_with_status(resources.redis, [camera])
    return found


@router.put("/cameras/{camera_id}", summary="Replace a camera's settings")
def update_camera(
    user: OperatorUser,
    conn: SessionDep,
    resources: ResourcesDep,
    camera_id: CameraId,
    body: CameraFields,
    client: CameraClient = None,
) -> Camera:
    return cameras.update_camera(
        conn, resources.url_rules, resources.publisher, user, camera_id, body, client
    )


@router.delete("/cameras/{camera_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_camera(
    user: OperatorUser,
    conn: SessionDep,
    resources: ResourcesDep,
    camera_id: CameraId,
    client: CameraClient = None,
) -> Response:
    deleted = cameras.delete_camera(conn, resources.publisher, user, camera_id, client)
    camera_status.forget(resources.redis, deleted.client_id, camera_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/cameras/{camera_id}/latest",
    summary="Latest detections with presigned URLs",
    dependencies=[Expensive],
)
def latest(resources: ResourcesDep, camera: VisibleCamera) -> CameraResult:
    return results.latest_result(resources, camera)


@router.get(
    "/cameras/{camera_id}/clips", summary="MP4 clips with presigned URLs", dependencies=[Expensive]
)
def clips(resources: ResourcesDep, camera: VisibleCamera) -> list[Clip]:
    return results.list_clips(resources, camera)


@router.get(
    "/cameras/{camera_id}/live",
    response_class=EventSourceResponse,
    summary="Server-sent events: a `result` event (CameraResult) whenever a newer frame lands",
    description="A stream ends after 5 minutes (EventSource reconnects); a caller holds at"
    " most a few streams at once (429 beyond).",
    dependencies=[Expensive, Depends(live_slot)],
)
async def live(
    request: Request,
    conn: SessionDep,
    resources: ResourcesDep,
    camera: VisibleCamera,
    limit: Annotated[int | None, Query(ge=1, le=10_000, description="stop after N events")] = None,
) -> AsyncIterator[ServerSentEvent]:
    conn.close()  # the stream may last minutes; do not hold a pooled connection
    sent, last, deadline = 0, None, time.monotonic() + LIVE_MAX_S
    while time.monotonic() < deadline and not await request.is_disconnected():
        latest = await asyncio.to_thread(results.latest_frame, resources, camera)
        if latest is not None and latest != last:
            frame = await asyncio.to_thread(results.frame_result, resources, camera, latest)
            if frame is not None:
                last = latest
                yield ServerSentEvent(
                    event="result",
                    id=f"{latest[0]}/{latest[1]}",
                    data=CameraResult(camera_id=camera.camera_id, result=frame),
                )
                sent += 1
                if limit is not None and sent >= limit:
                    return
        await asyncio.sleep(resources.settings.live_poll_s)
