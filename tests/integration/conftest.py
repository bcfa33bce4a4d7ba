"""Session fixtures for integration tests: the real local stack, started once.

``stack`` runs :func:`infra.local.stack.up` (idempotent: reuses whatever already answers)
and deliberately leaves everything running afterwards, because later test sessions and
`make demo` reuse it. Stop it explicitly with `vidpipe down`.
"""

from __future__ import annotations

import pytest

from infra.local.stack import DEFAULT_STATE_DIR, up
from vidpipe.settings import ServiceSettings


@pytest.fixture(scope="session")
def stack_settings() -> ServiceSettings:
    """Settings from the environment (defaults: the loopback ports `vidpipe up` uses)."""
    return ServiceSettings()


@pytest.fixture(scope="session")
def stack(stack_settings: ServiceSettings) -> None:
    """Every shared service up and provisioned (buckets, topics, schema)."""
    up(stack_settings, DEFAULT_STATE_DIR)
