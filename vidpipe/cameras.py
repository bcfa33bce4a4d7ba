"""Cameras: what a camera row may hold, and the one implementation of creating, editing
and deleting them (the CLI, the API and the dashboard pages all call these functions).

Rules: camera ids are unique per client (every object key and pointer carries the client),
so creating an id the same client already has is refused with :class:`CameraExists`, and
another client's ids are invisible (no cross-tenant oracle); a camera never moves between
clients (an edit names the client it belongs to, and another client's camera is
:class:`CameraNotFound`, as if it did not exist). A URL must pass the platform's URL policy
(:mod:`vidpipe.urlpolicy`) when it is saved.

Secrets: ``cameras.url`` holds the URL with its secrets masked (:func:`vidpipe.urls.mask_url`),
which is all that :class:`Camera` and every listing carry; the full URL, when it has secrets,
is sealed with Fernet in ``url_secret`` and opened only by :func:`stream_url` (the decoder).
An edit that leaves the password out (or sends ``***``) for the same host keeps the stored
secrets (:func:`vidpipe.urls.restore_secrets`).

Functions take a SQLAlchemy connection and do not commit: the caller owns the transaction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.dialects.postgresql import insert as pg_insert

from vidpipe.db import cameras
from vidpipe.ids import ID_PATTERN, ID_RULE
from vidpipe.settings import CameraSettings
from vidpipe.urlpolicy import UrlPolicy, check_camera_url
from vidpipe.urls import mask_url, restore_secrets

log = logging.getLogger(__name__)

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
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="rtsp:// or rtsps:// (file:// for platform administrators); a password"
        " of *** (or none) keeps the stored one for the same host",
    )
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
    url: str = Field(description="the stream URL with its secrets masked as ***")
    fps: float
    enabled: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None


#: Fernet key used when none is configured. It is public (it is in the source): development
#: and tests only; production sets ``VIDPIPE_CAMERAS__KEYS``.
DEVELOPMENT_KEY = "dmlkcGlwZSBkZXZlbG9wbWVudCBrZXk6IHB1YmxpYyE="


class CameraSecretUnreadable(RuntimeError):
    """A sealed URL cannot be opened with the configured keys (a key was dropped too soon)."""


class UrlCipher:
    """Seals URLs that carry secrets (Fernet; the first key seals, every key opens)."""

    def __init__(self, keys: Sequence[str]) -> None:
        """Raises ``ValueError`` for an empty list or a key that is not a Fernet key."""
        if not keys:
            raise ValueError("at least one Fernet key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def of(cls, settings: CameraSettings) -> UrlCipher:
        keys = [k.get_secret_value() for k in settings.keys]
        if not keys:
            log.warning(
                "VIDPIPE_CAMERAS__KEYS unset: camera credentials are sealed with the public"
                " development key; set your own key outside development"
            )
            keys = [DEVELOPMENT_KEY]
        return cls(keys)

    def seal(self, url: str) -> tuple[str, str | None]:
        """``(masked url, token)``; the token is None when the URL has no secrets."""
        masked = mask_url(url)
        return masked, None if masked == url else self._fernet.encrypt(url.encode()).decode()

    def open(self, url: str, token: str | None) -> str:
        """The full URL of a stored ``(url, url_secret)`` pair.

        Raises:
            CameraSecretUnreadable: the token was sealed with a key no longer configured.
        """
        if token is None:
            return url
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise CameraSecretUnreadable(
                f"the credentials of {url} were sealed with a key that is not configured"
                " (VIDPIPE_CAMERAS__KEYS)"
            ) from exc


@dataclass(frozen=True)
class UrlRules:
    """How a writer's camera URLs are checked and stored: the platform's policy, the
    cipher, and whether the writer is a platform administrator (may use file URLs)."""

    policy: UrlPolicy
    cipher: UrlCipher
    platform_admin: bool = False

    @classmethod
    def of(cls, settings: CameraSettings, platform_admin: bool = False) -> UrlRules:
        return cls(UrlPolicy.of(settings), UrlCipher.of(settings), platform_admin)

    def as_admin(self, platform_admin: bool) -> UrlRules:
        return UrlRules(self.policy, self.cipher, platform_admin)

    def checked(self, url: str) -> tuple[str, str | None]:
        """``(masked, token)`` of an allowed URL.

        Raises:
            vidpipe.urlpolicy.UrlRefused: the policy refuses it.
        """
        check_camera_url(url, self.policy, platform_admin=self.platform_admin)
        return self.cipher.seal(url)


class CameraExists(ValueError):
    """The client already has a camera with this id."""


class CameraNotFound(LookupError):
    """No such camera (or it belongs to another client)."""


class AmbiguousCamera(ValueError):
    """A camera id asked for without a client is held by several clients."""


def _camera(row: sa.Row[tuple[object, ...]]) -> Camera:
    return Camera.model_validate(row._mapping)


def get_camera(conn: sa.Connection, camera_id: str, client_id: str | None = None) -> Camera:
    """``client_id``'s camera; without a client (platform tools, superadmins), the one camera
    of that id in any client.

    Raises:
        CameraNotFound: no such camera (for that client).
        AmbiguousCamera: no client given and several clients have a camera of that id.
    """
    query = sa.select(cameras).where(cameras.c.camera_id == camera_id)
    if client_id is not None:
        query = query.where(cameras.c.client_id == client_id)
    rows = conn.execute(query.limit(2)).all()
    if not rows:
        raise CameraNotFound(f"camera {camera_id!r} not found")
    if len(rows) > 1:
        raise AmbiguousCamera(f"camera id {camera_id!r} exists in several clients: name the client")
    return _camera(rows[0])


def list_cameras(conn: sa.Connection, client_id: str | None = None) -> list[Camera]:
    """Cameras ordered by client and id; one client's when ``client_id`` is given."""
    query = sa.select(cameras).order_by(cameras.c.client_id, cameras.c.camera_id)
    if client_id is not None:
        query = query.where(cameras.c.client_id == client_id)
    return [_camera(r) for r in conn.execute(query)]


def stream_url(conn: sa.Connection, client_id: str, camera_id: str, cipher: UrlCipher) -> str:
    """The camera's full URL, secrets included: for the decoder only, never for answers.

    Raises:
        CameraNotFound: no such camera.
        CameraSecretUnreadable: its secrets were sealed with a key not configured.
    """
    row = conn.execute(
        sa.select(cameras.c.url, cameras.c.url_secret).where(
            cameras.c.client_id == client_id, cameras.c.camera_id == camera_id
        )
    ).one_or_none()
    if row is None:
        raise CameraNotFound(f"camera {camera_id!r} not found")
    return cipher.open(row.url, row.url_secret)


def reseal_urls(conn: sa.Connection, cipher: UrlCipher) -> int:
    """Seal every camera URL again with the cipher's first key (key rotation), and seal
    URLs stored in clear by older versions. Returns the number of rows rewritten.

    Raises:
        CameraSecretUnreadable: a row was sealed with a key the cipher lacks.
    """
    rows = conn.execute(
        sa.select(
            cameras.c.client_id, cameras.c.camera_id, cameras.c.url, cameras.c.url_secret
        ).with_for_update()
    ).all()
    changed = 0
    for row in rows:
        masked, token = cipher.seal(cipher.open(row.url, row.url_secret))
        if (masked, token) != (row.url, row.url_secret):
            conn.execute(
                sa.update(cameras)
                .where(cameras.c.client_id == row.client_id, cameras.c.camera_id == row.camera_id)
                .values(url=masked, url_secret=token)
            )
            changed += 1
    return changed


def create_camera(
    conn: sa.Connection, client_id: str, camera_id: str, fields: CameraFields, rules: UrlRules
) -> Camera:
    """Insert a camera for ``client_id``, its URL checked by ``rules`` and its secrets sealed.

    Raises:
        CameraExists: ``client_id`` already has a camera ``camera_id``.
        vidpipe.urlpolicy.UrlRefused: the URL policy refuses the URL.
        ValueError: ``camera_id`` breaks :data:`vidpipe.ids.ID_RULE`, or the URL asks for a
            stored secret (``***``) a new camera does not have.
    """
    if not re.fullmatch(ID_PATTERN, camera_id):
        raise ValueError(f"camera id {camera_id!r} is invalid: {ID_RULE}")
    # a new camera has no stored secrets: a *** placeholder is refused here
    masked, token = rules.checked(restore_secrets(fields.url, ""))
    row = conn.execute(
        pg_insert(cameras)
        .values(
            camera_id=camera_id,
            client_id=client_id,
            **fields.model_dump(exclude={"url"}),
            url=masked,
            url_secret=token,
        )
        .on_conflict_do_nothing(index_elements=["client_id", "camera_id"])
        .returning(cameras)
    ).one_or_none()
    if row is None:
        raise CameraExists(f"you already have a camera {camera_id!r}; pick another id")
    return _camera(row)


def update_camera(
    conn: sa.Connection, client_id: str, camera_id: str, fields: CameraFields, rules: UrlRules
) -> Camera:
    """Replace the fields of ``client_id``'s camera. Stored secrets are kept where the new
    URL asks for them (see the module doc); the resulting URL is checked by ``rules``.

    Raises:
        CameraNotFound: no such camera for ``client_id`` (cameras never change client).
        vidpipe.urlpolicy.UrlRefused: the URL policy refuses the URL.
        vidpipe.urls.StoredSecretsMismatch: ``***`` for another host than the stored one.
        CameraSecretUnreadable: the stored secrets cannot be opened.
    """
    stored = conn.execute(
        sa.select(cameras.c.url, cameras.c.url_secret)
        .where(cameras.c.camera_id == camera_id, cameras.c.client_id == client_id)
        .with_for_update()
    ).one_or_none()
    if stored is None:
        raise CameraNotFound(f"camera {camera_id!r} not found")
    url = restore_secrets(fields.url, rules.cipher.open(stored.url, stored.url_secret))
    masked, token = rules.checked(url)
    row = conn.execute(
        sa.update(cameras)
        .where(cameras.c.camera_id == camera_id, cameras.c.client_id == client_id)
        .values(
            **fields.model_dump(exclude={"url"}),
            url=masked,
            url_secret=token,
            updated_at=sa.func.now(),
        )
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
