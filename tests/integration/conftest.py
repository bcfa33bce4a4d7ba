"""Session fixtures for integration tests: the real local stack, started once.

``stack`` runs :func:`infra.local.stack.up` (idempotent: reuses whatever already answers)
and deliberately leaves everything running afterwards, because later test sessions and
`make demo` reuse it. Stop it explicitly with `vidpipe down`.

A product left running by `vidpipe serve` (or `make demo`) on the same state directory
would join the tests' consumer groups (``detector``, ``renderer``, ...), take their jobs
and hold their ports; its programs are paused for the session and started again after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from infra.local.health import maintenance_conninfo
from infra.local.serve import ServePaths, pause, resume
from infra.local.stack import DEFAULT_STATE_DIR, up
from vidpipe.settings import ServiceSettings
from vidpipe_cli.models import ensure_detector


@pytest.fixture(scope="session")
def stack_settings() -> ServiceSettings:
    """Settings from the environment (defaults: the loopback ports `vidpipe up` uses)."""
    return ServiceSettings()


@pytest.fixture(scope="session")
def stack(stack_settings: ServiceSettings) -> Iterator[None]:
    """Every shared service up and provisioned (buckets, topics, schema); a running
    `vidpipe serve` paused meanwhile."""
    up(stack_settings, DEFAULT_STATE_DIR)
    served = ServePaths(DEFAULT_STATE_DIR)
    paused = pause(served)
    try:
        yield
    finally:
        resume(served, paused)


@pytest.fixture(scope="session", autouse=True)
def model_version(stack: None, stack_settings: ServiceSettings) -> str:
    """``coco-centernet@production`` registered and loadable (imported if absent, or left by
    an older code layout) and optimized for OpenVINO, before any integration test runs."""
    return ensure_detector(stack_settings)


@pytest.fixture
def scratch_dsn(stack: None, stack_settings: ServiceSettings) -> Iterator[str]:
    """An empty database of its own on the stack's Postgres (dropped afterwards)."""
    name = f"vidpipe_mig_{uuid.uuid4().hex[:8]}"
    admin = maintenance_conninfo(stack_settings)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield maintenance_conninfo(stack_settings, dbname=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
