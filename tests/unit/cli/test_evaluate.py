"""``vidpipe evaluate`` wiring with the Spark job and the accuracy service replaced by fakes."""

from __future__ import annotations

import json
import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import services.reports.__main__ as report_main
from services.reports.report import ReportRow, ReportRun
from services.reports.report_sources import ReportWindow
from services.reports.settings import ReportSettings
from vidpipe_cli.evaluate import app as evaluate_app

WINDOW = ReportWindow(datetime(2026, 11, 22, 2, tzinfo=UTC), datetime(2026, 11, 22, 5, tzinfo=UTC))
ROW = ReportRow(
    client_id="demo",
    camera_id="vtest-cam",
    model_name="coco-centernet",
    model_version="1",
    hour=datetime(2026, 11, 22, 3, tzinfo=UTC),
    frames=795,
    dropped=0,
    effective_fps=10.37,
    decoded_p50_ms=10.4,
    decoded_p95_ms=32.2,
    decoded_p99_ms=98.2,
    detected_p50_ms=20672.7,
    detected_p95_ms=27467.6,
    detected_p99_ms=28071.4,
    rendered_p50_ms=None,
    rendered_p95_ms=None,
    rendered_p99_ms=None,
    mean_score=0.47,
    detections_by_label={"person": 5874, "car": 804},
)


def _run(rows: list[ReportRow], skipped: int = 0) -> ReportRun:
    examples = [f"'x/y/{i}': decoded_ts_ns must be a positive integer" for i in range(skipped)]
    return ReportRun(WINDOW, rows, sum(r.frames for r in rows), skipped, examples, 0, 1.5)


class FakeReport:
    """Stands in for ``generate_report``: records its window, returns ``run``."""

    def __init__(self) -> None:
        self.run = _run([ROW])
        self.calls: list[tuple[datetime | None, datetime | None]] = []

    def __call__(
        self, settings: ReportSettings, since: datetime | None, until: datetime | None
    ) -> ReportRun:
        self.calls.append((since, until))
        return self.run


@pytest.fixture
def fake_report(monkeypatch: pytest.MonkeyPatch) -> FakeReport:
    fake = FakeReport()
    monkeypatch.setattr(report_main, "generate_report", fake)
    return fake


def test_evaluate_when_rows_then_table_and_json_written(
    fake_report: FakeReport, tmp_path: Path
) -> None:
    out = tmp_path / "reports" / "rows.json"

    done = CliRunner().invoke(
        evaluate_app, ["--since", "2026-11-22T02:30:00Z", "--until", "4h", "--json", str(out)]
    )

    assert done.exit_code == 0, done.output
    assert "demo/vtest-cam" in done.output and "20673 / 27468 / 28071" in done.output
    assert "- / - / -" in done.output
    assert fake_report.calls[0][0] == datetime(2026, 11, 22, 2, 30, tzinfo=UTC)
    rows = json.loads(out.read_text())
    assert rows[0]["hour"] == "2026-11-22T03:00:00Z"
    assert rows[0]["detections_by_label"] == {"person": 5874, "car": 804}


def test_evaluate_when_window_empty_then_message_and_exit_zero(fake_report: FakeReport) -> None:
    fake_report.run = _run([], skipped=2)

    done = CliRunner().invoke(evaluate_app, [])

    assert done.exit_code == 0
    assert "no metrics between 2026-11-22 02:00 and 2026-11-22 05:00 UTC" in done.output
    assert "skipped 2 malformed metrics documents" in done.output


def test_evaluate_when_since_unparseable_then_usage_error(fake_report: FakeReport) -> None:
    done = CliRunner().invoke(evaluate_app, ["--since", "last tuesday"])

    assert done.exit_code == 2
    assert fake_report.calls == []


def test_accuracy_when_module_present_then_calls_it_and_prints_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, str]] = []

    def evaluate_accuracy(
        settings: ReportSettings, dataset: str, model: str, client_id: str | None = None
    ) -> Any:
        calls.append((dataset, model))
        return types.SimpleNamespace(
            dataset=dataset,
            model_name="coco-centernet",
            model_version="1",
            map=0.41,
            map_50=0.62,
            map_75=0.44,
            per_class_ap={"person": 0.52, "car": 0.30},
            images=12,
            mlflow_run_id="abc123",
        )

    fake = types.ModuleType("services.accuracy.service")
    fake.evaluate_accuracy = evaluate_accuracy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "services.accuracy.service", fake)

    done = CliRunner().invoke(
        evaluate_app,
        ["accuracy", "--dataset", "vtest-hand", "--model", "coco-centernet@production"],
    )

    assert done.exit_code == 0, done.output
    assert calls == [("vtest-hand", "coco-centernet@production")]
    assert "0.4100" in done.output and "AP person" in done.output and "abc123" in done.output


def test_accuracy_when_model_has_no_alias_or_version_then_usage_error() -> None:
    done = CliRunner().invoke(evaluate_app, ["accuracy", "--dataset", "d", "--model", "centernet"])

    assert done.exit_code == 2
