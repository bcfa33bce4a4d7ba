"""The promotion gate's decision rule."""

from __future__ import annotations

import pytest

from services.accuracy.promote import decide


@pytest.mark.parametrize(
    ("candidate", "production", "force", "expected"),
    [
        (0.40, 0.50, False, "refused"),
        (0.50, 0.50, False, "promoted"),
        (0.60, 0.50, False, "promoted"),
        (0.40, 0.50, True, "forced"),
        (0.60, 0.50, True, "promoted"),
        (0.00, None, False, "promoted"),
    ],
)
def test_decide_when_maps_compared_gives_gate_decision(
    candidate: float, production: float | None, force: bool, expected: str
) -> None:
    assert decide(candidate, production, force) == expected
