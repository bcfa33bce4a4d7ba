"""Camera rows from Postgres, the source of truth: what the agent's decoders should run.

Blocking (SQLAlchemy); the agent calls these in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from services.agent.owned import CameraKey, CameraRow
from vidpipe.cameras import (
    Camera,
    CameraNotFound,
    CameraSecretUnreadable,
    UrlCipher,
    get_camera,
    list_cameras,
    stream_url,
)


class CameraRows:
    """Reads camera rows, opening the URLs of enabled cameras with ``cipher``."""

    def __init__(self, engine: sa.Engine, cipher: UrlCipher) -> None:
        self._engine = engine
        self._cipher = cipher

    def load(self, owns: Callable[[CameraKey], bool]) -> dict[CameraKey, CameraRow]:
        """Every camera ``owns`` accepts, by ``(client, camera)``.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: Postgres unreachable.
        """
        with self._engine.connect() as conn:
            return {
                (c.client_id, c.camera_id): self._row(conn, c)
                for c in list_cameras(conn)
                if owns((c.client_id, c.camera_id))
            }

    def get(self, key: CameraKey) -> CameraRow | None:
        """The camera's row, or None when it was deleted.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: Postgres unreachable.
        """
        with self._engine.connect() as conn:
            try:
                camera = get_camera(conn, key[1], key[0])
            except CameraNotFound:
                return None
            return self._row(conn, camera)

    def _row(self, conn: sa.Connection, camera: Camera) -> CameraRow:
        url: str | None = None
        error: str | None = None
        if camera.enabled:
            try:
                url = stream_url(conn, camera.client_id, camera.camera_id, self._cipher)
            except CameraSecretUnreadable as exc:
                error = str(exc)
            except CameraNotFound:
                error = "deleted while read"
        return CameraRow(
            client_id=camera.client_id,
            camera_id=camera.camera_id,
            enabled=camera.enabled,
            fps=camera.fps,
            url=url,
            error=error,
        )
