"""How `vidpipe status` prints a served program."""

from __future__ import annotations

from infra.local.serve import ProgramStatus
from vidpipe_cli.serve import format_row, format_uptime


def test_format_uptime_when_hours_minutes_seconds_then_compact() -> None:
    assert format_uptime(3725) == "1h02m05s"
    assert format_uptime(65) == "1m05s"
    assert format_uptime(4.9) == "4s"
    assert format_uptime(None) == "-"


def test_format_row_when_running_then_state_pid_uptime_restarts_and_port() -> None:
    row = ProgramStatus("detector-1", "RUNNING", 4242, 61.0, 2, 9102, None)
    line = format_row(row)
    assert line.startswith("ok   detector-1")
    for part in ("RUNNING", "pid 4242", "up 1m01s", "restarts 2", "metrics :9102"):
        assert part in line


def test_format_row_when_fatal_then_marked_down_without_pid() -> None:
    row = ProgramStatus("dashboard", "FATAL", None, None, 5, None, 8000)
    line = format_row(row)
    assert line.startswith("DOWN dashboard") and "pid -" in line and "http :8000" in line
