"""Request lifecycle: the state is the latest step reached."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from vidpipe.requests import state_of

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def row(**reached: int) -> SimpleNamespace:
    steps = ("created", "processing", "processed", "finished", "failed", "interrupted")
    return SimpleNamespace(
        **{f"{s}_at": (T0 + timedelta(seconds=reached[s]) if s in reached else None) for s in steps}
    )


def test_state_of_when_steps_reached_then_latest() -> None:
    assert state_of(row(created=0)) == "created"
    assert state_of(row(created=0, processing=1)) == "processing"
    assert state_of(row(created=0, processing=1, processed=2, finished=3)) == "finished"
    assert state_of(row(created=0, failed=0)) == "failed"
    assert state_of(row(created=0, processing=1, processed=2, interrupted=3)) == "interrupted"
