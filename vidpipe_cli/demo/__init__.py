"""``vidpipe demo``: vtest.avi over real RTSP through every stage, a summary, and the
dashboard left running."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidpipe.logs import configure_logging
from vidpipe.settings import ServiceSettings
from vidpipe_cli.paths import REPO_ROOT, STATE_DIR


def demo(
    out: Annotated[Path, typer.Option(help="where demo-summary.json goes")] = REPO_ROOT / "out",
) -> None:
    """Serve vtest.avi over RTSP and run decoder, detector, renderer and metrics sink on it
    until every frame has passed all stages; print and save a summary."""
    # The demo drives every service: it needs all extras (dev install), not one image's.
    from vidpipe_cli.demo.runner import run_demo

    configure_logging()
    run_demo(ServiceSettings(), STATE_DIR, out)


def register(app: typer.Typer) -> None:
    app.command()(demo)
