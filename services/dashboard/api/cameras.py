"""Cameras, their latest result, clips and a live stream of results (SSE)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from services.dashboard import cameras, results
from services.dashboard.cameras import CameraIn
from services.dashboard.deps import CurrentUser, OperatorUser, ResourcesDep, SessionDep
from services.dashboard.results import CameraResult, Clip
from vidpipe.cameras import Camera, CameraFields
from vidpipe.ids import ID_PATTERN

router = APIRouter(tags=["cameras"])
CameraId = Annotated[str, Path(pattern=ID_PATTERN)]
#: a live stream ends after this long; EventSource reconnects by itself
LIVE_MAX_S = 300.0


def visible_camera(user: CurrentUser, conn: SessionDep, camera_id: CameraId) -> Camera:
    """The camera, checked before a response starts (a stream cannot turn into a 404)."""
    return cameras.get_camera(conn, user, camera_id)


VisibleCamera = Annotated[Camera, Depends(visible_camera)]


@router.get("/cameras")
def list_cameras(
    user: CurrentUser,
    conn: SessionDep,
    client_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> list[Camera]:
    return cameras.list_cameras(conn, user, client_id)


@router.post("/cameras", status_code=status.HTTP_201_CREATED)
def create_camera(user: OperatorUser, conn: SessionDep, body: CameraIn) -> Camera:
    return cameras.create_camera(conn, user, body)


@router.get("/cameras/{camera_id}")
def get_camera(camera: VisibleCamera) -> Camera:
    return camera


@router.put("/cameras/{camera_id}", summary="Replace a camera's settings")
def update_camera(
    user: OperatorUser, conn: SessionDep, camera_id: CameraId, body: CameraFields
) -> Camera:
    return cameras.update_camera(conn, user, camera_id, body)


@router.delete("/cameras/{camera_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_camera(user: OperatorUser, conn: SessionDep, camera_id: CameraId) -> Response:
    cameras.delete_camera(conn, user, camera_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/cameras/{camera_id}/latest", summary="Latest detections with presigned URLs")
def latest(resources: ResourcesDep, camera: VisibleCamera) -> CameraResult:
    return results.latest_result(resources, camera)


@router.get("/cameras/{camera_id}/clips", summary="MP4 clips with presigned URLs")
def clips(resources: ResourcesDep, camera: VisibleCamera) -> list[Clip]:
    return results.list_clips(resources, camera)


@router.get(
    "/cameras/{camera_id}/live",
    response_class=EventSourceResponse,
    summary="Server-sent events: a `result` event (CameraResult) whenever a newer frame lands",
)
async def live(
    request: Request,
    conn: SessionDep,
    resources: ResourcesDep,
    camera: VisibleCamera,
    limit: Annotated[int | None, Query(ge=1, le=10_000, description="stop after N events")] = None,
) -> AsyncIterator[ServerSentEvent]:
    conn.close()  # the stream may last minutes; do not hold a pooled connection
    sent, last_seq, deadline = 0, -1, time.monotonic() + LIVE_MAX_S
    while time.monotonic() < deadline and not await request.is_disconnected():
        seq = await asyncio.to_thread(results.latest_seq, resources, camera)
        if seq is not None and seq != last_seq:
            frame = await asyncio.to_thread(results.frame_result, resources, camera, seq)
            if frame is not None:
                last_seq = seq
                yield ServerSentEvent(
                    event="result",
                    id=str(seq),
                    data=CameraResult(camera_id=camera.camera_id, result=frame),
                )
                sent += 1
                if limit is not None and sent >= limit:
                    return
        await asyncio.sleep(resources.settings.live_poll_s)
