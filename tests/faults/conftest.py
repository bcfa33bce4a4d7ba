"""Fault-injection scenarios (marker ``faults``) against the real local stack.

`make test` runs the short version of each scenario; `make faults` sets
``VIDPIPE_FAULTS_FULL=1`` for the full counts. Each scenario prints one JSON line of its
figures (``FAULTS {...}``) and appends it to ``var/log/faults/figures.jsonl``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.conftest import model_version, stack, stack_settings
from tests.integration.pipeline.conftest import client_id, services, settings, vtest_frames

__all__ = [
    "client_id",
    "model_version",
    "services",
    "settings",
    "stack",
    "stack_settings",
    "vtest_frames",
]

FIGURES = Path(__file__).resolve().parents[2] / "var" / "log" / "faults" / "figures.jsonl"


def full() -> bool:
    """Whether the full counts run (`make faults`), not the short ones (`make test`)."""
    return os.environ.get("VIDPIPE_FAULTS_FULL", "") not in ("", "0")


def scaled(short: int, whole: int) -> int:
    """``whole`` under `make faults`, ``short`` otherwise."""
    return whole if full() else short


def report(scenario: str, **figures: object) -> None:
    """Print the scenario's figures as one JSON line and append it to :data:`FIGURES`."""
    line = json.dumps({"scenario": scenario, "full": full(), **figures}, sort_keys=True)
    print(f"FAULTS {line}")
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(line + "\n")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.integration)
