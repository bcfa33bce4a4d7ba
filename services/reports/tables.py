"""The report job's results as terminal tables (rich), for ``vidpipe evaluate`` and
``python -m services.reports``."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table

from services.reports.report import ReportRun
from vidpipe.reports import ReportRow


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
