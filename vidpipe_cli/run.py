"""``vidpipe run SERVICE``: one service process in the foreground until SIGTERM.

Services come from the registry :data:`services.SERVICES` and are imported only when run
(they pull in torch, mlflow or pyspark). Options are passed the way every deployment passes
them, as ``VIDPIPE_*`` environment variables.
"""

from __future__ import annotations

import importlib
import os
from enum import StrEnum
from typing import Annotated

import typer

from services import SERVICES

Service = StrEnum("Service", {name: name for name in SERVICES})  # type: ignore[misc]


def run(
    service: Service,
    camera: Annotated[
        str | None, typer.Option(help="decoder: camera id (default: $VIDPIPE_CAMERA_ID)")
    ] = None,
    client: Annotated[
        str | None,
        typer.Option(
            help="decoder: the camera's client, when several clients use the camera id "
            "(default: $VIDPIPE_CLIENT_ID)"
        ),
    ] = None,
    once: Annotated[bool, typer.Option(help="decoder: stop at end of stream")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="janitor: count what is past retention, delete nothing")
    ] = False,
) -> None:
    """Run one service process until SIGTERM."""
    if service == "decoder":
        camera = camera or os.environ.get("VIDPIPE_CAMERA_ID")
        if not camera:
            raise typer.BadParameter("the decoder needs --camera (or VIDPIPE_CAMERA_ID)")
        os.environ["VIDPIPE_CAMERA_ID"] = camera
        if client:
            os.environ["VIDPIPE_CLIENT_ID"] = client
        if once:
            os.environ["VIDPIPE_RECONNECT"] = "false"
    if dry_run:
        os.environ["VIDPIPE_DRY_RUN"] = "true"
    importlib.import_module(f"{SERVICES[str(service)]}.__main__").main()


def register(app: typer.Typer) -> None:
    app.command()(run)
