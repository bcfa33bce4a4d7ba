"""Trainer fencing on the real Postgres and MLflow: a claim that was recovered and taken by
another trainer can no longer write, and a job registers exactly one model version however
often it is retried."""

from __future__ import annotations

import threading

import mlflow
import psycopg
import pytest
import torch
from mlflow import MlflowClient

from services.trainer.service import process_job
from services.trainer.settings import TrainerSettings
from tests.integration.trainer.conftest import Scope, spec
from vidpipe.jobs import Claim, JobStore
from vidpipe_ml.registry import JOB_TAG, job_versions, log_registered_model, settle_job_version

pytestmark = pytest.mark.integration


def _backdate_heartbeat(settings: TrainerSettings, job_id: int) -> None:
    """What a trainer stalled (SIGSTOP, GC pause) for ten minutes looks like."""
    with psycopg.connect(settings.postgres.dsn.get_secret_value()) as conn:
        conn.execute(
            "UPDATE training_jobs SET heartbeat_at = now() - interval '10 minutes'"
            " WHERE job_id = %s",
            (job_id,),
        )


def test_claim_when_recovered_and_reclaimed_then_the_old_claims_writes_are_refused(
    scope: Scope, trainer_settings: TrainerSettings, queue: JobStore
) -> None:
    job = queue.insert(spec(scope, dataset=f"fence-{scope.tag}"))
    first = queue.claim(job.job_id, "trainer-a")
    assert first is not None and first.claim == Claim(job.job_id, "trainer-a", 1)
    _backdate_heartbeat(trainer_settings, job.job_id)
    assert job.job_id in {j.job_id for j in queue.recover_orphans(1.0, 3)}
    second = queue.claim(job.job_id, "trainer-b")
    assert second is not None and second.claim == Claim(job.job_id, "trainer-b", 3)
    stale = first.claim

    refused = [
        queue.heartbeat(stale),
        queue.succeed(stale, "m", "1", "run-a"),
        queue.fail(stale, "stalled trainer's error"),
        queue.requeue(stale),
        queue.acknowledge_cancel(stale),
    ]

    assert refused == [False] * 5
    assert queue.heartbeat(second.claim)
    assert queue.succeed(second.claim, "m", "2", "run-b")
    final = queue.get(job.job_id)
    assert final is not None
    assert (final.state, final.model_version, final.trainer_id) == ("succeeded", "2", "trainer-b")
    assert final.attempts == 2 and final.reason is None


def test_cancel_when_acknowledged_then_only_the_holder_releases_the_claim(
    scope: Scope, queue: JobStore
) -> None:
    job = queue.insert(spec(scope, dataset=f"cancel-{scope.tag}"))
    claimed = queue.claim(job.job_id, "trainer-a")
    assert claimed is not None
    assert queue.cancel(job.job_id, "cancelled by pytest") is not None

    assert not queue.heartbeat(claimed.claim)  # the trainer notices the cancellation
    assert not queue.succeed(claimed.claim, "m", "1", "run")  # and cannot finish it
    assert not queue.acknowledge_cancel(Claim(job.job_id, "trainer-b", claimed.fence_token))
    assert queue.acknowledge_cancel(claimed.claim)
    final = queue.get(job.job_id)
    assert final is not None and (final.state, final.trainer_id) == ("cancelled", None)


class Killed(BaseException):
    """The trainer process dies (SIGKILL) at this point: nothing after it runs."""


class DiesBeforeSucceeded(JobStore):
    """The real store, except that the trainer dies right before marking the job
    succeeded (after it registered the version and moved ``candidate``)."""

    def succeed(self, claim: Claim, model_name: str, model_version: str, run_id: str) -> bool:
        raise Killed(f"killed after registering {model_name}/{model_version}")


def test_job_when_trainer_killed_after_registering_then_the_retry_reuses_the_version(
    scope: Scope, trainer_settings: TrainerSettings, queue: JobStore
) -> None:
    job = queue.insert(spec(scope))
    dying = DiesBeforeSucceeded(queue._engine, trainer_settings.clients)
    with pytest.raises(Killed):
        process_job(trainer_settings, dying, job.job_id, threading.Event())
    _backdate_heartbeat(trainer_settings, job.job_id)
    assert job.job_id in {j.job_id for j in queue.recover_orphans(1.0, 3)}

    retry = trainer_settings.model_copy(update={"trainer_id": f"it-retry-{scope.tag}"})
    trained = process_job(retry, queue, job.job_id, threading.Event())

    uri = trainer_settings.mlflow.tracking_uri
    client = MlflowClient(uri, uri)
    stored = queue.get(job.job_id)
    assert stored is not None and trained is not None
    versions = job_versions(client, scope.model_name, stored.idempotency_key)
    assert versions == [trained.version]  # one version for the job, reused by the retry
    assert (stored.state, stored.attempts, stored.model_version) == (
        "succeeded",
        2,
        trained.version,
    )
    candidate = client.get_model_version_by_alias(scope.model_name, "candidate")
    assert candidate.version == trained.version
    assert client.get_model_version(scope.model_name, trained.version).tags["job_id"] == str(
        job.job_id
    )


def test_registry_when_a_job_registers_twice_then_the_newer_version_is_deleted(
    scope: Scope, trainer_settings: TrainerSettings
) -> None:
    uri = trainer_settings.mlflow.tracking_uri
    client = MlflowClient(uri, uri)
    key = f"race-{scope.tag}@2026-12-01T00:00:00+00:00"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(trainer_settings.experiment)
    made = []
    for _ in range(2):  # two trainers registering for the same job (the loser stalled)
        with mlflow.start_run(run_name=f"race-{scope.tag}"):
            made.append(
                log_registered_model(
                    torch.nn.Linear(1, 1),
                    scope.model_name,
                    ["__background__"],
                    None,
                    uri,
                    owner=scope.client_id,
                    tags={JOB_TAG: key},
                )
            )
    older, newer = sorted(made, key=int)

    kept_by_newer = settle_job_version(client, scope.model_name, key, newer)
    kept_by_older = settle_job_version(client, scope.model_name, key, older)

    assert kept_by_newer == kept_by_older == older
    assert job_versions(client, scope.model_name, key) == [older]
