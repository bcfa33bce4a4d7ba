"""Cameras as the dashboard serves them: the caller's client scope on top of the one
implementation of the camera rules (:mod:`vidpipe.cameras`: URL policy, sealed secrets;
answers carry only masked URLs). Another client's camera is a 404, as if it did not exist;
a URL the policy refuses is a 422 on ``url``. Every change, once committed, is announced on
the cameras' control topic (best effort: :mod:`vidpipe.control`), so the owning agent starts,
restarts or stops the camera's decoder."""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import ConfigDict, Field

from services.dashboard.auth import Principal
from services.dashboard.errors import Conflict, Invalid
from services.dashboard.tenancy import acting_client, client_filter
from vidpipe import cameras
from vidpipe.cameras import CAMERA_EXAMPLE, Camera, CameraExists, CameraFields, UrlRules
from vidpipe.control import SyncPublisher, edit_action, publish_camera_change
from vidpipe.ids import ID_PATTERN, ID_RULE


class CameraIn(CameraFields):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"camera_id": "gate-1", **CAMERA_EXAMPLE}]}
    )

    camera_id: str = Field(pattern=ID_PATTERN, description=ID_RULE)
    client_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="superadmin only; default: your client"
    )


def list_cameras(
    conn: sa.Connection, principal: Principal, client_id: str | None = None
) -> list[Camera]:
    return cameras.list_cameras(conn, client_filter(principal, client_id))


def get_camera(
    conn: sa.Connection, principal: Principal, camera_id: str, client_id: str | None = None
) -> Camera:
    """The principal's camera; a superadmin's in ``client_id``, or in any client when the id
    is held by one only.

    Raises:
        vidpipe.cameras.CameraNotFound: (404) none, or another client's camera.
        vidpipe.cameras.AmbiguousCamera: (422) a superadmin named no client and several
            clients hold the id.
    """
    return cameras.get_camera(conn, camera_id, client_filter(principal, client_id))


def create_camera(
    conn: sa.Connection,
    rules: UrlRules,
    publisher: SyncPublisher,
    principal: Principal,
    body: CameraIn,
) -> Camera:
    """Raises Conflict (409) for an id the client already has, Invalid (422, ``url``) for a
    refused URL. Ids of other clients are invisible: the same id may exist there."""
    client = acting_client(conn, principal, body.client_id)
    fields = CameraFields.model_validate(body.model_dump(exclude={"camera_id", "client_id"}))
    try:
        camera = cameras.create_camera(
            conn, client, body.camera_id, fields, rules.as_admin(principal.is_superadmin)
        )
    except CameraExists as exc:
        raise Conflict(str(exc), field="camera_id") from exc
    except ValueError as exc:  # the URL policy, or *** for a secret a new camera lacks
        raise Invalid(str(exc), field="url") from exc
    conn.commit()
    publish_camera_change(publisher, camera.client_id, camera.camera_id, "created")
    return camera


def update_camera(
    conn: sa.Connection,
    rules: UrlRules,
    publisher: SyncPublisher,
    principal: Principal,
    camera_id: str,
    body: CameraFields,
    client_id: str | None = None,
) -> Camera:
    """Raises CameraNotFound (404), Invalid (422, ``url``) for a refused URL."""
    current = get_camera(conn, principal, camera_id, client_id)
    try:
        camera = cameras.update_camera(
            conn, current.client_id, camera_id, body, rules.as_admin(principal.is_superadmin)
        )
    except ValueError as exc:
        raise Invalid(str(exc), field="url") from exc
    conn.commit()
    action = edit_action(current.enabled, camera.enabled)
    publish_camera_change(publisher, camera.client_id, camera.camera_id, action)
    return camera


def delete_camera(
    conn: sa.Connection,
    publisher: SyncPublisher,
    principal: Principal,
    camera_id: str,
    client_id: str | None = None,
) -> Camera:
    """The deleted camera, its deletion announced. Raises CameraNotFound (404)."""
    current = get_camera(conn, principal, camera_id, client_id)
    cameras.delete_camera(conn, current.client_id, camera_id)
    conn.commit()
    publish_camera_change(publisher, current.client_id, camera_id, "deleted")
    return current
