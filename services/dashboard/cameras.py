"""Cameras as the dashboard serves them: the caller's client scope on top of the one
implementation of the camera rules (:mod:`vidpipe.cameras`), and stream passwords masked
for viewers. Another client's camera is a 404, as if it did not exist."""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import ConfigDict, Field

from services.dashboard.auth import Principal, Role
from services.dashboard.errors import Conflict
from services.dashboard.tenancy import acting_client, client_filter
from vidpipe import cameras
from vidpipe.cameras import CAMERA_EXAMPLE, Camera, CameraExists, CameraFields
from vidpipe.ids import ID_PATTERN, ID_RULE
from vidpipe.urls import mask_url


class CameraIn(CameraFields):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"camera_id": "gate-1", **CAMERA_EXAMPLE}]}
    )

    camera_id: str = Field(pattern=ID_PATTERN, description=ID_RULE)
    client_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="superadmin only; default: your client"
    )


def _out(camera: Camera, principal: Principal) -> Camera:
    if not principal.role.at_least(Role.operator):  # viewers do not see stream passwords
        return camera.model_copy(update={"url": mask_url(camera.url)})
    return camera


def list_cameras(
    conn: sa.Connection, principal: Principal, client_id: str | None = None
) -> list[Camera]:
    only = client_filter(principal, client_id)
    return [_out(c, principal) for c in cameras.list_cameras(conn, only)]


def get_camera(conn: sa.Connection, principal: Principal, camera_id: str) -> Camera:
    """Raises :class:`vidpipe.cameras.CameraNotFound` (404) for another client's camera."""
    scope = None if principal.is_superadmin else principal.client_id
    return _out(cameras.get_camera(conn, camera_id, scope), principal)


def create_camera(conn: sa.Connection, principal: Principal, body: CameraIn) -> Camera:
    client = acting_client(conn, principal, body.client_id)
    fields = CameraFields.model_validate(body.model_dump(exclude={"camera_id", "client_id"}))
    try:
        camera = cameras.create_camera(conn, client, body.camera_id, fields)
    except CameraExists as exc:
        raise Conflict(str(exc), field="camera_id") from exc
    conn.commit()
    return _out(camera, principal)


def update_camera(
    conn: sa.Connection, principal: Principal, camera_id: str, body: CameraFields
) -> Camera:
    current = get_camera(conn, principal, camera_id)
    camera = cameras.update_camera(conn, current.client_id, camera_id, body)
    conn.commit()
    return _out(camera, principal)


def delete_camera(conn: sa.Connection, principal: Principal, camera_id: str) -> None:
    current = get_camera(conn, principal, camera_id)
    cameras.delete_camera(conn, current.client_id, camera_id)
    conn.commit()
