"""``python -m services.reports [--since 2h] [--until ISO] [--json PATH]``: one report run.

Also the spark-submit entry point (the script is then run by path, not as a module)::

    PYSPARK_PYTHON=.venv/bin/python .venv/bin/spark-submit --master 'local[2]' \\
        --jars /usr/share/java/postgresql.jar services/reports/__main__.py --since 2h

``vidpipe evaluate`` runs the same job with the same options.
"""

from __future__ import annotations

import sys
from pathlib import Path

if (
    __name__ == "__main__"
    and sys.path
    and (Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent)
):
    # Run by path, Python puts this directory first on sys.path, where settings.py would
    # shadow any top-level module of that name; vidpipe is importable from the venv.
    del sys.path[0]

import argparse
import json
import logging
from datetime import UTC, datetime

from rich.console import Console

from services.reports.report import ReportRun, generate_report
from services.reports.settings import ReportSettings
from services.reports.tables import print_run
from vidpipe.instants import parse_instant
from vidpipe.logs import configure_logging


def run(
    settings: ReportSettings,
    since: str | None,
    until: str | None,
    json_path: Path | None,
    console: Console,
) -> ReportRun:
    """Run the report for the window (default: the last ``report_window_hours``), print it,
    and write the rows as JSON when ``json_path`` is given.

    Raises:
        ValueError: a malformed time, or ``since`` not before ``until``.
        FileNotFoundError: no JDBC jar.
    """
    now = datetime.now(UTC)
    start = parse_instant(since, now) if since else None
    end = parse_instant(until, now) if until else None
    report = generate_report(settings, start, end)
    print_run(report, console)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        payload = [row.model_dump(mode="json") for row in report.rows]
        json_path.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {len(payload)} rows to {json_path}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.reports", description=__doc__)
    parser.add_argument("--since", help="window start: ISO 8601 (naive = UTC) or 90m/2h/1d ago")
    parser.add_argument("--until", help="window end (default: now)")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write rows here")
    args = parser.parse_args(argv)
    settings = ReportSettings()
    configure_logging(settings.log_level)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        run(settings, args.since, args.until, args.json_path, Console(width=160))
    except (ValueError, FileNotFoundError) as exc:
        print(f"report failed: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
