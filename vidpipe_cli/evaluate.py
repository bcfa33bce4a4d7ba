"""``vidpipe evaluate``: hourly performance reports (Spark) and model accuracy (mAP).

The report job and the accuracy service are imported inside the commands: they pull in
pyspark, torch and mlflow, and ``vidpipe --help`` must stay instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vidpipe.logs import configure_logging
from vidpipe.modelref import parse_model_ref
from vidpipe.objectstore import ObjectStore
from vidpipe.reports import AccuracyRecord
from vidpipe.settings import ServiceSettings
from vidpipe_cli.datasets import prepare_builtin_dataset

app = typer.Typer(
    add_completion=False,
    help="Hourly performance reports (Spark over frame metrics) and model accuracy (mAP).",
)


def console() -> Console:
    """A terminal console; wide when writing to a pipe or file (tables stay readable)."""
    plain = Console()
    return plain if plain.is_terminal else Console(width=160)


@app.callback(invoke_without_command=True)
def evaluate(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="window start: ISO 8601 (naive = UTC) or 90m/2h/1d ago")
    ] = None,
    until: Annotated[str | None, typer.Option(help="window end (default: now)")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="also write the rows as a JSON list here")
    ] = None,
) -> None:
    """Compute hourly performance reports for a window (default: last 24 h) with Spark,
    replace the window's rows in Postgres ``performance_reports`` and print them. The window
    is widened to whole UTC hours."""
    if ctx.invoked_subcommand is not None:
        return
    from services.reports.__main__ import run
    from services.reports.settings import ReportSettings

    settings = ReportSettings()
    configure_logging(settings.log_level)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        run(settings, since, until, json_path, console())
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"vidpipe evaluate: {exc}", err=True)
        raise typer.Exit(2) from exc


def accuracy_table(result: AccuracyRecord) -> Table:
    """One accuracy evaluation as a two-column table."""
    table = Table(title=f"accuracy of {result.model_name}@{result.model_version}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("mAP@[.5:.95]", f"{result.map:.4f}")
    table.add_row("mAP@.5", f"{result.map_50:.4f}")
    table.add_row("mAP@.75", f"{result.map_75:.4f}")
    table.add_row("dataset", f"{result.dataset} ({result.images} images)")
    table.add_row("mlflow run", result.mlflow_run_id or "-")
    for label, ap in sorted(result.per_class_ap.items(), key=lambda kv: -kv[1]):
        table.add_row(f"AP {label}", f"{ap:.4f}")
    return table


@app.command("accuracy")
def accuracy(
    dataset: Annotated[str, typer.Option(help="labelled dataset name")],
    model: Annotated[str, typer.Option(help="registered model: NAME@ALIAS or NAME/VERSION")],
    client: Annotated[
        str | None,
        typer.Option(help="on behalf of this client: only shared and its own models/datasets"),
    ] = None,
) -> None:
    """Evaluate a registered model's mAP on a labelled dataset and print the result. The
    report belongs to the client owning the model or dataset, else it is shared."""
    try:
        parse_model_ref(model)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from exc
    from services.accuracy.service import evaluate_accuracy
    from vidpipe.datasets import InvalidDataset
    from vidpipe_ml.cache import ModelUnavailable

    settings = ServiceSettings()
    configure_logging(settings.log_level)
    try:
        prepare_builtin_dataset(ObjectStore(settings.s3), dataset)
        result = evaluate_accuracy(settings, dataset, model, client_id=client)
    except (LookupError, InvalidDataset, ModelUnavailable, ValueError) as exc:
        typer.echo(f"vidpipe evaluate accuracy: {exc}", err=True)
        raise typer.Exit(1) from exc
    console().print(accuracy_table(result))
