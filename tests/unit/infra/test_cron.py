"""The report job's schedule under `vidpipe serve`."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime

import pytest

from infra.local.cron import next_run, run_once
from infra.local.programs import REPORT_SCHEDULE


def test_next_run_when_k8s_schedule_then_five_past_the_next_hour() -> None:
    after = datetime(2026, 12, 1, 10, 7, tzinfo=UTC)
    assert next_run(REPORT_SCHEDULE, after) == datetime(2026, 12, 1, 11, 5, tzinfo=UTC)


def test_next_run_when_malformed_then_refused() -> None:
    with pytest.raises(ValueError, match="cron"):
        next_run("every hour", datetime.now(UTC))


def test_run_once_when_command_fails_then_exit_code_returned() -> None:
    code = run_once([sys.executable, "-c", "raise SystemExit(3)"], 30, threading.Event())
    assert code == 3


def test_run_once_when_run_exceeds_timeout_then_stopped() -> None:
    code = run_once([sys.executable, "-c", "import time; time.sleep(60)"], 1, threading.Event())
    assert code is None
