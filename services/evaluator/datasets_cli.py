"""``vidpipe datasets``: build, import and list COCO datasets in the ``datasets`` bucket.

Mounted by ``services/cli.py`` as ``app.add_typer(datasets_app, name="datasets")``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services.evaluator.dataset_builder import BuildSummary
from vidpipe.logs import configure_logging

if TYPE_CHECKING:
    from vidpipe.objectstore import ObjectStore

datasets_app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="COCO datasets for training and evaluation."
)
log = logging.getLogger(__name__)


def _store() -> ObjectStore:
    from vidpipe.objectstore import ObjectStore
    from vidpipe.settings import ServiceSettings

    return ObjectStore(ServiceSettings().s3)


def _client_of(camera_id: str) -> str:
    """The camera's owning client from the config store. Raises typer.BadParameter if unknown."""
    from vidpipe.configstore import ConfigStore
    from vidpipe.settings import ServiceSettings

    settings = ServiceSettings()
    camera = ConfigStore(settings.postgres, settings.redis).get_camera(camera_id)
    if camera is None:
        raise typer.BadParameter(f"camera {camera_id!r} is not configured; pass --client")
    return camera.client_id


def _echo_summary(summary: BuildSummary) -> None:
    typer.echo(
        f"dataset {summary.name}: {summary.images} images "
        f"({summary.negatives} without boxes), {summary.boxes} boxes"
    )
    for label, count in summary.boxes_by_label.items():
        typer.echo(f"  {label:<20} {count:>7}")
    if summary.teachers:
        typer.echo(f"  teacher: {', '.join(summary.teachers)}")


@datasets_app.command("build")
def build_cmd(
    from_camera: Annotated[str, typer.Option("--from-camera", help="camera id")],
    name: Annotated[
        str,
        typer.Option(help="dataset name (lowercase letters, digits, . _ -); stored as CLIENT/NAME"),
    ],
    client: Annotated[
        str | None, typer.Option(help="client id (default: the camera's, from config)")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="ISO 8601 (naive = UTC) or 90m/2h/1d before now")
    ] = None,
    min_score: Annotated[float, typer.Option(min=0.0, max=1.0, help="keep scores >= this")] = 0.4,
    labels: Annotated[str, typer.Option(help="comma-separated labels; empty = all")] = "",
    max_frames: Annotated[int | None, typer.Option(min=1, help="first N frames")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing dataset")] = False,
) -> None:
    """Pseudo-label a camera's stored frames with the detections the detector wrote."""
    from services.evaluator.cli import parse_instant
    from services.evaluator.dataset_builder import build_from_camera
    from services.evaluator.datasets import InvalidDataset

    configure_logging()
    since_ns = None
    if since:
        since_ns = int(parse_instant(since, datetime.now(UTC)).timestamp() * 1e9)
    wanted = {label.strip() for label in labels.split(",") if label.strip()} or None
    client = client or _client_of(from_camera)
    try:
        summary = build_from_camera(
            _store(),
            client,
            from_camera,
            name if "/" in name else f"{client}/{name}",
            since_ns,
            min_score,
            labels=wanted,
            max_frames=max_frames,
            overwrite=overwrite,
        )
    except InvalidDataset as exc:
        typer.echo(f"datasets build failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    _echo_summary(summary)


@datasets_app.command("import")
def import_cmd(
    folder: Annotated[Path, typer.Argument(help="folder with annotations.json and images")],
    name: Annotated[str, typer.Option(help="dataset name: lowercase letters, digits, . _ -")],
    client: Annotated[
        str | None, typer.Option(help="owning client: stored as CLIENT/NAME (default: shared)")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing dataset")] = False,
) -> None:
    """Upload a local COCO dataset (images relative to FOLDER or FOLDER/images/).

    Without ``--client`` it is a shared set every client may train and evaluate on."""
    from services.evaluator.dataset_builder import import_folder
    from services.evaluator.datasets import InvalidDataset

    configure_logging()
    try:
        dataset = f"{client}/{name}" if client else name
        summary = import_folder(_store(), folder, dataset, overwrite=overwrite)
    except (InvalidDataset, FileNotFoundError) as exc:
        typer.echo(f"datasets import failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    _echo_summary(summary)


@datasets_app.command("list")
def list_cmd() -> None:
    """Names of the complete datasets in the store."""
    from services.evaluator.datasets import list_datasets

    configure_logging("WARNING")
    for dataset in list_datasets(_store()):
        typer.echo(dataset)
