"""Cameras of a client: validation, scoped reads and writes.

Camera ids are global (they key frames in Kafka and S3), so a create never overwrites: an id
taken by any client is a 409. Reads and writes of another client's camera are 404s.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.dashboard.auth import Principal, Role
from services.dashboard.db import cameras
from services.dashboard.errors import Conflict, NotFound
from services.dashboard.tenancy import ID_PATTERN, ID_RULE, acting_client, client_filter

URL_SCHEMES = ("rtsp", "rtsps", "file")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EXAMPLE: dict[str, Any] = {
    "name": "Gate 1",
    "url": "rtsp://10.0.0.5:554/stream",
    "fps": 5.0,
    "enabled": True,
}


class CameraFields(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    name: str = Field(min_length=1, max_length=100, description="shown in the dashboard")
    url: str = Field(min_length=1, max_length=2048, description="rtsp://, rtsps:// or file://")
    fps: float = Field(ge=0.1, le=120, description="frames per second to decode")
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        value = value.strip()
        if not value or _CONTROL.search(value):
            raise ValueError("name must be non-blank text without control characters")
        return value

    @field_validator("url")
    @classmethod
    def _stream_url(cls, value: str) -> str:
        if _CONTROL.search(value) or " " in value:
            raise ValueError("url must not contain spaces or control characters")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ValueError(f"url is not a valid URL: {exc}") from exc
        if parts.scheme not in URL_SCHEMES:
            raise ValueError(f"url scheme must be one of {', '.join(URL_SCHEMES)}")
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise ValueError("file URLs need an absolute local path: file:///path/to/video")
        elif not parts.hostname:
            raise ValueError(f"{parts.scheme} URLs need a host: {parts.scheme}://host[:port]/path")
        return value


class CameraIn(CameraFields):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"camera_id": "gate-1", **_EXAMPLE}]}
    )

    camera_id: str = Field(pattern=ID_PATTERN, description=ID_RULE)
    client_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="superadmin only; default: your client"
    )


class CameraOut(BaseModel):
    camera_id: str
    client_id: str
    name: str | None
    url: str
    fps: float
    enabled: bool
    created_at: datetime
    updated_at: datetime


def mask_credentials(url: str) -> str:
    """``rtsp://user:secret@host/x`` -> ``rtsp://user:***@host/x``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _out(row: sa.Row, principal: Principal) -> CameraOut:
    camera = CameraOut.model_validate(row._mapping)
    if not principal.role.at_least(Role.operator):  # viewers do not see stream passwords
        camera = camera.model_copy(update={"url": mask_credentials(camera.url)})
    return camera


def list_cameras(
    conn: sa.Connection, principal: Principal, client_id: str | None = None
) -> list[CameraOut]:
    query = sa.select(cameras).order_by(cameras.c.client_id, cameras.c.camera_id)
    only = client_filter(principal, client_id)
    if only is not None:
        query = query.where(cameras.c.client_id == only)
    return [_out(r, principal) for r in conn.execute(query)]


def get_camera(conn: sa.Connection, principal: Principal, camera_id: str) -> CameraOut:
    row = conn.execute(sa.select(cameras).where(cameras.c.camera_id == camera_id)).one_or_none()
    if row is None or not principal.sees(row.client_id):
        raise NotFound(f"camera {camera_id!r} not found", field="camera_id")
    return _out(row, principal)


def create_camera(conn: sa.Connection, principal: Principal, body: CameraIn) -> CameraOut:
    client = acting_client(conn, principal, body.client_id)
    fields = body.model_dump(exclude={"client_id"})
    row = conn.execute(
        pg_insert(cameras)
        .values(client_id=client, **fields)
        .on_conflict_do_nothing(index_elements=["camera_id"])
        .returning(cameras)
    ).one_or_none()
    if row is None:
        raise Conflict(f"camera id {body.camera_id!r} is taken; pick another", field="camera_id")
    conn.commit()
    return _out(row, principal)


def update_camera(
    conn: sa.Connection, principal: Principal, camera_id: str, body: CameraFields
) -> CameraOut:
    current = get_camera(conn, principal, camera_id)
    row = conn.execute(
        sa.update(cameras)
        .where(cameras.c.camera_id == camera_id, cameras.c.client_id == current.client_id)
        .values(**body.model_dump(), updated_at=sa.func.now())
        .returning(cameras)
    ).one()
    conn.commit()
    return _out(row, principal)


def delete_camera(conn: sa.Connection, principal: Principal, camera_id: str) -> None:
    current = get_camera(conn, principal, camera_id)
    conn.execute(
        sa.delete(cameras).where(
            cameras.c.camera_id == camera_id, cameras.c.client_id == current.client_id
        )
    )
    conn.commit()
