"""Two trainer processes with short heartbeats; the one training a job is frozen (SIGSTOP)
past the stale window, its job is recovered and re-claimed by the other, then it resumes.
Exactly one model version is registered per job, and the stalled trainer stops."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from mlflow import MlflowClient

from infra.local.processes import ServiceProcess, start_service
from tests.faults import procs
from tests.faults.conftest import report, scaled
from tests.integration.pipeline.conftest import LOGS, wait_for
from tests.integration.trainer.conftest import Scope, queue, scope, spec, trainer_settings
from vidpipe.jobs import JobStore
from vidpipe.settings import ServiceSettings

__all__ = ["queue", "scope", "trainer_settings"]

STALE_S = 4.0


def _trainer(scope: Scope, name: str) -> ServiceProcess:
    env = {
        "VIDPIPE_CLIENTS": f'["{scope.client_id}"]',
        "VIDPIPE_GROUP_ID": f"faults-trainer-{scope.tag}",
        "VIDPIPE_TRAINER_ID": f"faults-{name}-{scope.tag}",
        "VIDPIPE_MAX_ITERATIONS_PER_EPOCH": "1",
        "VIDPIPE_HEARTBEAT_S": "0.5",
        "VIDPIPE_STALE_AFTER_S": str(STALE_S),
        "VIDPIPE_RECOVER_EVERY_S": "1",
        "VIDPIPE_POLL_S": "0.5",
        "VIDPIPE_TORCH_THREADS": "1",
        "VIDPIPE_EXPERIMENT": "faults-training",
    }
    return start_service("trainer", LOGS, env, tag=f"-{name}-{uuid.uuid4().hex[:6]}")


def _log(proc: ServiceProcess) -> str:
    return proc.log_path.read_bytes()[proc.log_offset :].decode(errors="replace")


def _job_is(
    queue: JobStore, job_id: int, state: str | None = None, attempts: int = 0
) -> Callable[[], bool]:
    def check() -> bool:
        job = queue.get(job_id)
        return job is not None and state in (None, job.state) and job.attempts >= attempts

    return check


def _logged(proc: ServiceProcess, since: int, *texts: str) -> Callable[[], bool]:
    """Whether ``proc`` logged one of ``texts`` after character ``since`` of its log."""
    return lambda: any(text in _log(proc)[since:] for text in texts)


def test_trainers_when_one_stalls_past_the_stale_window_then_one_version_per_job(
    scope: Scope, queue: JobStore, stack_settings: ServiceSettings
) -> None:
    jobs = scaled(1, 3)
    running, stalled = _trainer(scope, "a"), _trainer(scope, "b")
    try:
        for proc in (running, stalled):
            proc.wait_logged("trainer started", timeout_s=240)
        uri = stack_settings.mlflow.tracking_uri
        client = MlflowClient(uri, uri)
        figures: list[dict[str, float]] = []
        for _ in range(jobs):
            # the trainer to stall is frozen while the job is submitted, so the other claims it
            # first; then roles swap: the claimer is frozen past the stale window
            procs.stall(stalled.pid)
            job = queue.insert(spec(scope, epochs=40))
            wait_for(_job_is(queue, job.job_id, state="running"), 120, "claim")
            procs.resume(stalled.pid)
            holder, other = running, stalled
            mark = len(_log(holder))
            with procs.stalled(holder.pid) as since:
                wait_for(
                    _job_is(queue, job.job_id, attempts=2),
                    STALE_S * 10,
                    "the job re-claimed by the other trainer",
                )
                reclaimed_s = time.monotonic() - since
            wait_for(_job_is(queue, job.job_id, state="succeeded"), 600, "success")
            # the stalled one stops (or, without fencing, registers a second version)
            stopped = _logged(holder, mark, "training job stopped", "model registered")
            wait_for(stopped, 300, "the stalled trainer to stop or register")
            final = queue.get(job.job_id)
            assert final is not None
            versions = client.search_model_versions(
                f"name = '{scope.model_name}' and tags.job_id = '{job.job_id}'"
            )
            assert len(versions) == 1, f"job {job.job_id}: versions {[v.version for v in versions]}"
            assert final.model_version == str(versions[0].version)
            assert "training job stopped" in _log(holder)[mark:]
            assert holder.alive() and other.alive()
            figures.append({"reclaimed_after_s": round(reclaimed_s, 1)})
            running, stalled = other, holder  # the winner is the next one frozen
        refused = _log(running).count("refused") + _log(stalled).count("refused")
        report(
            "trainer_sigstop",
            jobs=jobs,
            versions_per_job=1,
            refused_writes_logged=refused,
            reclaimed_after_s=[f["reclaimed_after_s"] for f in figures],
            stale_after_s=STALE_S,
        )
    finally:
        for proc in (running, stalled):
            procs.resume(proc.pid)
            proc.stop()
