"""Cameras: what a camera row may hold, and the one implementation of creating, editing
and deleting them (the CLI, the API and the dashboard pages all call these functions).

Rules: camera ids are global (they key frames in Kafka and S3), so creating an id that
exists, in any client, is refused with :class:`CameraExists`; a camera never moves between
clients (an edit names the client it belongs to, and another client's camera is
:class:`CameraNotFound`, as if it did not exist).

Functions take a SQLAlchemy connection and do not commit: the caller owns the transaction.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.dialects.postgresql import insert as pg_insert

from vidpipe.db import cameras
from vidpipe.ids import ID_PATTERN, ID_RULE

#: URL schemes a camera may use: live RTSP streams and local video files.
URL_SCHEMES = ("rtsp", "rtsps", "file")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_stream_url(value: str) -> str:
    """``value`` unchanged when it is a usable camera URL.

    Raises:
        ValueError: spaces or control characters, a malformed URL or port, a scheme not in
            :data:`URL_SCHEMES`, a file URL that is not an absolute local path, or a live
            URL without a host.
    """
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


#: A camera as an API example (OpenAPI).
CAMERA_EXAMPLE: dict[str, Any] = {
    "name": "Gate 1",
    "url": "rtsp://10.0.0.5:554/stream",
    "fps": 5.0,
    "enabled": True,
}


class CameraFields(BaseModel):
    """What an operator sets on a camera. ``fps``: frames per second the decoder samples."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CAMERA_EXAMPLE]})

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
        return check_stream_url(value)


class Camera(BaseModel):
    """One row of ``cameras``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    camera_id: str = Field(pattern=ID_PATTERN, description=ID_RULE)
    client_id: str
    name: str | None
    url: str
    fps: float
    enabled: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CameraExists(ValueError):
    """The camera id is taken (by this or another client)."""


class CameraNotFound(LookupError):
    """No such camera (or it belongs to another client)."""


def _camera(row: sa.Row[tuple[object, ...]]) -> Camera:
    return Camera.model_validate(row._mapping)


def get_camera(conn: sa.Connection, camera_id: str, client_id: str | None = None) -> Camera:
    """The camera, optionally only if it belongs to ``client_id``.

    Raises:
        CameraNotFound: no such camera (for that client).
    """
    query = sa.select(cameras).where(cameras.c.camera_id == camera_id)
    if client_id is not None:
        query = query.where(cameras.c.client_id == client_id)
    row = conn.execute(query).one_or_none()
    if row is None:
        raise CameraNotFound(f"camera {camera_id!r} not found")
    return _camera(row)


def list_cameras(conn: sa.Connection, client_id: str | None = None) -> list[Camera]:
    """Cameras ordered by client and id; one client's when ``client_id`` is given."""
    query = sa.select(cameras).order_by(cameras.c.client_id, cameras.c.camera_id)
    if client_id is not None:
        query = query.where(cameras.c.client_id == client_id)
    return [_camera(r) for r in conn.execute(query)]


def create_camera(
    conn: sa.Connection, client_id: str, camera_id: str, fields: CameraFields
) -> Camera:
    """Insert a camera for ``client_id``.

    Raises:
        CameraExists: ``camera_id`` is taken.
        ValueError: ``camera_id`` breaks :data:`vidpipe.ids.ID_RULE`.
    """
    if not re.fullmatch(ID_PATTERN, camera_id):
        raise ValueError(f"camera id {camera_id!r} is invalid: {ID_RULE}")
    row = conn.execute(
        pg_insert(cameras)
        .values(camera_id=camera_id, client_id=client_id, **fields.model_dump())
        .on_conflict_do_nothing(index_elements=["camera_id"])
        .returning(cameras)
    ).one_or_none()
    if row is None:
        raise CameraExists(f"camera id {camera_id!r} is taken; pick another")
    return _camera(row)


def update_camera(
    conn: sa.Connection, client_id: str, camera_id: str, fields: CameraFields
) -> Camera:
    """Replace the fields of ``client_id``'s camera.

    Raises:
        CameraNotFound: no such camera for ``client_id`` (cameras never change client).
    """
    row = conn.execute(
        sa.update(cameras)
        .where(cameras.c.camera_id == camera_id, cameras.c.client_id == client_id)
        .values(**fields.model_dump(), updated_at=sa.func.now())
        .returning(cameras)
    ).one_or_none()
    if row is None:
        raise CameraNotFound(f"camera {camera_id!r} not found")
    return _camera(row)


def delete_camera(conn: sa.Connection, client_id: str, camera_id: str) -> None:
    """Delete ``client_id``'s camera. Raises :class:`CameraNotFound` when it has none."""
    deleted = conn.execute(
        sa.delete(cameras).where(cameras.c.camera_id == camera_id, cameras.c.client_id == client_id)
    )
    if deleted.rowcount == 0:
        raise CameraNotFound(f"camera {camera_id!r} not found")
