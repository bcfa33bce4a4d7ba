"""Crash safety: a job a dead trainer left ``running`` never stays there."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from services.trainer.__main__ import drain_queued
from services.trainer.settings import TrainerSettings
from tests.integration.trainer.conftest import Scope, spec
from vidpipe.jobs import JobStore

pytestmark = pytest.mark.integration


def _make_stale(settings: TrainerSettings, job_id: int, attempts: int) -> None:
    """What a trainer killed mid-job leaves: running, heartbeat ten minutes old."""
    with psycopg.connect(settings.postgres.dsn.get_secret_value()) as conn:
        conn.execute(
            "UPDATE training_jobs SET state = 'running', attempts = %s,"
            " heartbeat_at = now() - interval '10 minutes' WHERE job_id = %s",
            (attempts, job_id),
        )


async def test_trainer_start_when_job_orphaned_requeues_and_retries_it(
    scope: Scope, trainer_settings: TrainerSettings, queue: JobStore
) -> None:
    job = queue.insert(spec(scope, dataset=f"gone-{scope.tag}"))
    _make_stale(trainer_settings, job.job_id, attempts=1)

    await drain_queued(trainer_settings, queue, asyncio.Event(), threading.Event())

    retried = queue.get(job.job_id)
    assert retried is not None and retried.attempts == 2  # re-queued, then claimed again
    assert retried.state == "failed" and "not found" in (retried.reason or "")


async def test_trainer_start_when_attempts_exhausted_fails_the_job(
    scope: Scope, trainer_settings: TrainerSettings, queue: JobStore
) -> None:
    job = queue.insert(spec(scope))
    _make_stale(trainer_settings, job.job_id, attempts=trainer_settings.max_attempts)

    await drain_queued(trainer_settings, queue, asyncio.Event(), threading.Event())

    failed = queue.get(job.job_id)
    assert failed is not None and failed.state == "failed"
    assert "trainer died while running it 3 times" in (failed.reason or "")


def test_recovery_when_heartbeat_fresh_leaves_running_job_alone(
    scope: Scope, trainer_settings: TrainerSettings, queue: JobStore
) -> None:
    job = queue.insert(spec(scope, dataset=f"busy-{scope.tag}"))
    claimed = queue.claim(job.job_id, "it-trainer")

    recovered = queue.recover_orphans(stale_after_s=60, max_attempts=3)

    assert claimed is not None and job.job_id not in {j.job_id for j in recovered}
    assert (queue.get(job.job_id) or job).state == "running"
    assert queue.fail(claimed.claim, "test cleanup")


def test_trainer_process_when_sigkilled_mid_job_its_job_is_recovered(
    scope: Scope, trainer_settings: TrainerSettings, queue: JobStore
) -> None:
    """A real ``python -m services.trainer`` is SIGKILLed while training; recovery (what
    the next trainer runs at start) then fails it (max_attempts 1) instead of leaving it."""
    job = queue.insert(spec(scope, epochs=10_000))
    env = os.environ | {
        "VIDPIPE_CLIENTS": f'["{scope.client_id}"]',
        "VIDPIPE_GROUP_ID": trainer_settings.group_id,
        "VIDPIPE_MAX_ITERATIONS_PER_EPOCH": "1",
        "VIDPIPE_HEARTBEAT_S": "0.5",
        "VIDPIPE_TORCH_THREADS": "1",
    }
    trainer = subprocess.Popen(
        [sys.executable, "-m", "services.trainer"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            current = queue.get(job.job_id)
            if current is not None and current.state == "running":
                break
            assert trainer.poll() is None, "trainer exited before claiming the job"
            time.sleep(0.5)
        else:
            pytest.fail("trainer never started the job")
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(timeout=30)
    assert (queue.get(job.job_id) or job).state == "running"  # stuck, as a crash leaves it
    time.sleep(1.5)  # heartbeat now older than stale_after_s below

    recovered = queue.recover_orphans(stale_after_s=1.0, max_attempts=1)

    assert job.job_id in {j.job_id for j in recovered}
    final = queue.get(job.job_id)
    assert final is not None and final.state == "failed"
    assert "trainer died" in (final.reason or "")
