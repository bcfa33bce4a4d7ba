"""``vidpipe evaluate``: hourly performance reports (Spark) and model accuracy (mAP).

Mounted by ``services/cli.py`` as ``app.add_typer(evaluate_app, name="evaluate")``; also runs
alone as ``python -m services.evaluator`` or under spark-submit::

    PYSPARK_PYTHON=.venv/bin/python .venv/bin/spark-submit --master 'local[2]' \\
        --jars /usr/share/java/postgresql.jar services/evaluator/__main__.py --since 2h

Spark (and its JVM) is imported only when a report runs, so ``--help`` stays instant.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from services.evaluator.settings import EvaluatorSettings
from vidpipe.logs import configure_logging

if TYPE_CHECKING:
    from services.evaluator.report import ReportRow, ReportRun

evaluate_app = typer.Typer(
    add_completion=False,
    help="Hourly performance reports (Spark over frame metrics) and model accuracy (mAP).",
)
log = logging.getLogger(__name__)
_RELATIVE = re.compile(r"^(\d+)\s*([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_instant(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (naive = UTC, ``Z`` allowed) or a duration before ``now``: ``90m``,
    ``2h``, ``1d``.

    Raises:
        typer.BadParameter: neither form.
    """
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: expected ISO 8601 or 90m/2h/1d") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _ms(values: Sequence[float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:.0f}" for v in values)


def _key_columns(table: Table) -> None:
    table.add_column("hour (UTC)", no_wrap=True)
    table.add_column("client/camera")
    table.add_column("model")


def _key_cells(row: ReportRow) -> tuple[str, str, str]:
    model = f"{row.model_name}@{row.model_version}" if row.model_name else "(none)"
    return row.hour.strftime("%Y-%m-%d %H:00"), f"{row.client_id}/{row.camera_id}", model


def report_tables(rows: Sequence[ReportRow]) -> tuple[Table, Table]:
    """Rows as two rich tables: throughput and detections; latency (ms) per hop."""
    volume = Table(title="frames and detections per hour", box=box.SIMPLE_HEAD)
    _key_columns(volume)
    for header in ("frames", "dropped", "fps", "mean score"):
        volume.add_column(header, justify="right")
    volume.add_column("top labels")
    latency = Table(title="latency from capture, ms: p50 / p95 / p99", box=box.SIMPLE_HEAD)
    _key_columns(latency)
    for hop in ("decoded", "detected", "rendered"):
        latency.add_column(hop, justify="right", no_wrap=True)
    for row in rows:
        top = sorted(row.detections_by_label.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        volume.add_row(
            *_key_cells(row),
            str(row.frames),
            str(row.dropped),
            "-" if row.effective_fps is None else f"{row.effective_fps:.1f}",
            "-" if row.mean_score is None else f"{row.mean_score:.3f}",
            ", ".join(f"{label} {n}" for label, n in top),
        )
        latency.add_row(
            *_key_cells(row),
            _ms((row.decoded_p50_ms, row.decoded_p95_ms, row.decoded_p99_ms)),
            _ms((row.detected_p50_ms, row.detected_p95_ms, row.detected_p99_ms)),
            _ms((row.rendered_p50_ms, row.rendered_p95_ms, row.rendered_p99_ms)),
        )
    return volume, latency


def print_run(run: ReportRun, console: Console) -> None:
    """The run's table, or a one-line message when its window had no metrics."""
    span = f"{run.window.start:%Y-%m-%d %H:%M} and {run.window.end:%Y-%m-%d %H:%M} UTC"
    if run.skipped:
        console.print(f"[yellow]skipped {run.skipped} malformed metrics documents[/yellow]")
        for example in run.skipped_examples:
            console.print(f"  {example}", markup=False)
    if not run.rows:
        console.print(f"no metrics between {span}: 0 report rows")
        return
    for table in report_tables(run.rows):
        console.print(table)
    console.print(
        f"{len(run.rows)} rows from {run.documents} frames between {span} "
        f"in {run.elapsed_s:.1f} s (replaced {run.rows_deleted} earlier rows)"
    )


@evaluate_app.callback(invoke_without_command=True)
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
    settings = EvaluatorSettings()
    configure_logging(settings.log_level)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    ctx.obj = settings
    if ctx.invoked_subcommand is not None:
        return
    from services.evaluator.report import generate_report

    now = datetime.now(UTC)
    start = parse_instant(since, now) if since else None
    end = parse_instant(until, now) if until else None
    try:
        run = generate_report(settings, start, end)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"vidpipe evaluate: {exc}", err=True)
        raise typer.Exit(2) from exc
    console = Console()
    if not console.is_terminal:  # a pipe or file: don't squeeze the tables into 80 columns
        console = Console(width=160)
    print_run(run, console)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        payload = [row.model_dump(mode="json") for row in run.rows]
        json_path.write_text(json.dumps(payload, indent=2) + "\n")
        typer.echo(f"wrote {len(payload)} rows to {json_path}")


def accuracy_table(result: Any) -> Table:
    """An ``AccuracyResult`` (services.evaluator.accuracy) as a two-column table."""
    table = Table(title=f"accuracy of {result.model_name}@{result.model_version}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in (("mAP@[.5:.95]", result.map), ("mAP@.5", result.map_50)):
        table.add_row(name, "-" if value is None else f"{value:.4f}")
    table.add_row("mAP@.75", "-" if result.map_75 is None else f"{result.map_75:.4f}")
    table.add_row("dataset", f"{result.dataset} ({result.images} images)")
    table.add_row("mlflow run", result.mlflow_run_id or "-")
    for label, ap in sorted(result.per_class_ap.items(), key=lambda kv: -kv[1]):
        table.add_row(f"AP {label}", f"{ap:.4f}")
    return table


@evaluate_app.command("accuracy")
def accuracy(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="labelled dataset name")],
    model: Annotated[str, typer.Option(help="registered model: NAME@ALIAS or NAME/VERSION")],
) -> None:
    """Evaluate a registered model's mAP on a labelled dataset and print the result."""
    if not re.fullmatch(r"[^@/\s]+[@/][^@/\s]+", model):
        raise typer.BadParameter(
            f"{model!r}: expected NAME@ALIAS or NAME/VERSION", param_hint="--model"
        )
    try:
        from services.evaluator.accuracy import evaluate_accuracy
    except ModuleNotFoundError as exc:
        if exc.name != "services.evaluator.accuracy":
            raise
        typer.echo(
            "vidpipe evaluate accuracy: services/evaluator/accuracy.py is not there yet", err=True
        )
        raise typer.Exit(1) from exc
    from services.detector.model_cache import ModelUnavailable
    from services.evaluator.datasets import DatasetNotFound, InvalidDataset

    settings: EvaluatorSettings = ctx.obj or EvaluatorSettings()
    try:
        prepare_builtin_dataset(settings, dataset)
        result = evaluate_accuracy(settings, dataset, model)
    except (DatasetNotFound, InvalidDataset, ModelUnavailable, ValueError) as exc:
        typer.echo(f"vidpipe evaluate accuracy: {exc}", err=True)
        raise typer.Exit(1) from exc
    Console().print(accuracy_table(result))


def prepare_builtin_dataset(settings: EvaluatorSettings, dataset: str) -> None:
    """Upload the labelled set that ships with vidpipe (``vtest-persons``) on first use."""
    from services.evaluator.datasets import VTEST_PERSONS, ensure_vtest_persons

    if dataset != VTEST_PERSONS:
        return
    from infra.local.media import fetch_vtest
    from vidpipe.objectstore import ObjectStore

    assets = Path(__file__).resolve().parents[2] / "var" / "assets"
    ensure_vtest_persons(ObjectStore(settings.s3), fetch_vtest(assets))
