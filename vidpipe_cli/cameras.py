"""``vidpipe cameras``: cameras of a client, through the same rules as the API
(:mod:`vidpipe.cameras`: ids are unique, a camera never moves between clients, URLs pass
the platform's URL policy). The CLI acts as a platform administrator (it holds the
database's keys), so it may use file:// URLs; loopback and the like still need the
allow-list (``VIDPIPE_CAMERAS__ALLOW``). Each change, once committed, is announced to the
camera agents (:mod:`vidpipe.control`; best effort, they also reconcile on their own)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import sqlalchemy as sa
import typer
from pydantic import ValidationError

from vidpipe import cameras
from vidpipe.cameras import CameraExists, CameraFields, CameraNotFound, UrlCipher, UrlRules
from vidpipe.control import announce_camera_change_sync, edit_action
from vidpipe.db import create_engine
from vidpipe.events import CameraAction
from vidpipe.settings import ServiceSettings

app = typer.Typer(no_args_is_help=True, help="Cameras of a client.")


@contextmanager
def _transaction() -> Iterator[sa.Connection]:
    engine = create_engine(ServiceSettings().postgres, pool_size=1)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _rules() -> UrlRules:
    return UrlRules.of(ServiceSettings().cameras, platform_admin=True)


def _announce(client: str, camera_id: str, action: CameraAction) -> None:
    if not announce_camera_change_sync(ServiceSettings().kafka, client, camera_id, action):
        typer.echo(
            "agents were not told (Kafka unreachable): they pick it up within 30 s", err=True
        )


def _fields(name: str, url: str, fps: float, enabled: bool) -> CameraFields:
    try:
        return CameraFields(name=name, url=url, fps=fps, enabled=enabled)
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise typer.BadParameter(problems) from exc


@app.command("add")
def add_camera(
    camera_id: str,
    client: Annotated[str, typer.Option(help="owning client id")],
    url: Annotated[str, typer.Option(help="rtsp://, rtsps:// or file:///path")],
    fps: Annotated[float, typer.Option(min=0.1, max=120)] = 10.0,
    name: Annotated[str | None, typer.Option()] = None,
    enabled: Annotated[bool, typer.Option(help="stream it")] = True,
) -> None:
    """Create a camera (an existing id is refused: use `cameras update`)."""
    fields = _fields(name or camera_id, url, fps, enabled)
    try:
        with _transaction() as conn:
            cameras.create_camera(conn, client, camera_id, fields, _rules())
    except (CameraExists, ValueError) as exc:
        typer.echo(f"camera not added: {exc}", err=True)
        raise typer.Exit(1) from exc
    except sa.exc.IntegrityError as exc:
        typer.echo(f"camera not added: client {client!r} does not exist", err=True)
        raise typer.Exit(1) from exc
    _announce(client, camera_id, "created")
    typer.echo(f"camera {camera_id} added")


@app.command("update")
def update_camera(
    camera_id: str,
    client: Annotated[str, typer.Option(help="the client the camera belongs to")],
    url: Annotated[str | None, typer.Option(help="new stream URL")] = None,
    fps: Annotated[float | None, typer.Option(min=0.1, max=120)] = None,
    name: Annotated[str | None, typer.Option()] = None,
    enabled: Annotated[bool | None, typer.Option(help="stream it")] = None,
) -> None:
    """Change a camera's URL, rate, name or enabled flag (it stays with its client)."""
    try:
        with _transaction() as conn:
            current = cameras.get_camera(conn, camera_id, client)
            fields = _fields(
                name or current.name or camera_id,
                url or current.url,  # masked: its stored secrets are kept
                fps or current.fps,
                current.enabled if enabled is None else enabled,
            )
            cameras.update_camera(conn, client, camera_id, fields, _rules())
            action = edit_action(current.enabled, fields.enabled)
    except CameraNotFound as exc:
        typer.echo(f"camera not updated: {exc} for client {client!r}", err=True)
        raise typer.Exit(1) from exc
    except ValueError as exc:
        typer.echo(f"camera not updated: {exc}", err=True)
        raise typer.Exit(1) from exc
    _announce(client, camera_id, action)
    typer.echo(f"camera {camera_id} updated")


@app.command("remove")
def remove_camera(
    camera_id: str,
    client: Annotated[str, typer.Option(help="the client the camera belongs to")],
) -> None:
    """Delete a camera (its stored frames stay until retention removes them)."""
    try:
        with _transaction() as conn:
            cameras.delete_camera(conn, client, camera_id)
    except CameraNotFound as exc:
        typer.echo(f"camera not removed: {exc} for client {client!r}", err=True)
        raise typer.Exit(1) from exc
    _announce(client, camera_id, "deleted")
    typer.echo(f"camera {camera_id} removed")


@app.command("list")
def list_cameras(client: Annotated[str | None, typer.Option(help="one client's")] = None) -> None:
    """Cameras with their client, rate, state and URL (passwords masked)."""
    with _transaction() as conn:
        found = cameras.list_cameras(conn, client)
    for camera in found:
        state = "enabled" if camera.enabled else "disabled"
        typer.echo(
            f"{camera.client_id:<16} {camera.camera_id:<20} {camera.fps:>5g} fps {state:<8} "
            f"{camera.url}"
        )


@app.command("rotate-key")
def rotate_key() -> None:
    """Seal every camera's credentials again with the first of ``VIDPIPE_CAMERAS__KEYS``
    (old keys, still listed after it, open them), and seal any stored in clear."""
    cipher = UrlCipher.of(ServiceSettings().cameras)
    with _transaction() as conn:
        changed = cameras.reseal_urls(conn, cipher)
    typer.echo(f"{changed} camera URL(s) sealed with the current key")
