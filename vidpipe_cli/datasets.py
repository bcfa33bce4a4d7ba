"""``vidpipe datasets``: build, import, list COCO datasets in the ``datasets`` bucket, and
put the shipped labelled set ``vtest-persons`` there."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from infra.local.media import fetch_vtest
from vidpipe.cameras import AmbiguousCamera, CameraNotFound, get_camera
from vidpipe.dataset_builder import BuildSummary, build_from_camera, import_folder
from vidpipe.datasets import (
    VTEST_PERSONS,
    InvalidDataset,
    ensure_vtest_persons,
    list_datasets,
)
from vidpipe.db import create_engine
from vidpipe.instants import parse_instant
from vidpipe.logs import configure_logging
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings
from vidpipe_cli.paths import ASSETS_DIR

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="COCO datasets for training and evaluation."
)


def _store() -> ObjectStore:
    return ObjectStore(ServiceSettings().s3)


def _client_of(camera_id: str) -> str:
    """The camera's owning client. Raises typer.BadParameter if unknown."""
    engine = create_engine(ServiceSettings().postgres, pool_size=1)
    try:
        with engine.connect() as conn:
            return get_camera(conn, camera_id).client_id
    except CameraNotFound:
        raise typer.BadParameter(f"camera {camera_id!r} is not configured; pass --client") from None
    except AmbiguousCamera as exc:
        raise typer.BadParameter(f"{exc}: pass --client") from None
    finally:
        engine.dispose()


def prepare_builtin_dataset(store: ObjectStore, dataset: str) -> None:
    """Upload the labelled set that ships with vidpipe (``vtest-persons``) on first use; any
    other name is left alone."""
    if dataset == VTEST_PERSONS:
        ensure_vtest_persons(store, fetch_vtest(ASSETS_DIR))


def _echo_summary(summary: BuildSummary) -> None:
    typer.echo(
        f"dataset {summary.name}: {summary.images} images "
        f"({summary.negatives} without boxes), {summary.boxes} boxes"
    )
    for label, count in summary.boxes_by_label.items():
        typer.echo(f"  {label:<20} {count:>7}")
    if summary.teachers:
        typer.echo(f"  teacher: {', '.join(summary.teachers)}")


@app.command("build")
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
    configure_logging()
    since_ns = None
    if since:
        try:
            since_ns = int(parse_instant(since, datetime.now(UTC)).timestamp() * 1e9)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--since") from exc
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


@app.command("import")
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
    configure_logging()
    try:
        dataset = f"{client}/{name}" if client else name
        summary = import_folder(_store(), folder, dataset, overwrite=overwrite)
    except (InvalidDataset, FileNotFoundError) as exc:
        typer.echo(f"datasets import failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    _echo_summary(summary)


@app.command("list")
def list_cmd() -> None:
    """Names of the complete datasets in the store."""
    configure_logging("WARNING")
    for dataset in list_datasets(_store()):
        typer.echo(dataset)


@app.command("ensure-vtest-persons")
def ensure_vtest_persons_cmd() -> None:
    """Upload the hand-labelled ``vtest-persons`` set (frames cut from vtest.avi); safe to
    re-run."""
    configure_logging()
    prepare_builtin_dataset(_store(), VTEST_PERSONS)
    typer.echo(f"dataset {VTEST_PERSONS} ready")
