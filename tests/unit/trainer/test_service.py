"""The trainer's job handling with an in-memory queue: claims, outcomes, heartbeats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from services.trainer import service
from services.trainer.service import (
    JobCancelled,
    JobInterrupted,
    TrainedModel,
    heartbeat,
    process_job,
)
from services.trainer.settings import TrainerSettings
from vidpipe.jobs import Claim, JobState, TrainingJob

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class FakeQueue:
    """:class:`services.trainer.service.JobQueue` in memory, with the same fenced
    transitions as :class:`vidpipe.jobs.JobStore` (every write checks job, trainer, token)."""

    def __init__(self, *job_ids: int) -> None:
        self.jobs = {
            i: TrainingJob(
                job_id=i,
                client_id="acme",
                dataset="d",
                architecture="ssdlite320_mobilenet_v3_large",
                epochs=1,
                batch_size=2,
                learning_rate=0.01,
                image_size=96,
                state="queued",
                created_at=NOW,
                updated_at=NOW,
            )
            for i in job_ids
        }
        self.beats = 0

    def _set(self, job_id: int, **changes: object) -> None:
        self.jobs[job_id] = self.jobs[job_id].model_copy(update=changes)

    def _holds(self, claim: Claim, state: JobState) -> bool:
        job = self.jobs[claim.job_id]
        return job.state == state and (job.trainer_id, job.fence_token) == (
            claim.trainer_id,
            claim.token,
        )

    def claim(self, job_id: int, trainer_id: str) -> TrainingJob | None:
        job = self.jobs.get(job_id)
        if job is None or job.state != "queued":
            return None
        self._set(
            job_id,
            state="running",
            attempts=job.attempts + 1,
            trainer_id=trainer_id,
            fence_token=job.fence_token + 1,
        )
        return self.jobs[job_id]

    def heartbeat(self, claim: Claim) -> bool:
        self.beats += 1
        return self._holds(claim, "running")

    def succeed(self, claim: Claim, model_name: str, model_version: str, run_id: str) -> bool:
        if not self._holds(claim, "running"):
            return False
        self._set(
            claim.job_id, state="succeeded", model_name=model_name, model_version=model_version
        )
        return True

    def fail(self, claim: Claim, reason: str) -> bool:
        if not self._holds(claim, "running"):
            return False
        self._set(claim.job_id, state="failed", reason=reason)
        return True

    def acknowledge_cancel(self, claim: Claim) -> bool:
        if not self._holds(claim, "cancelled"):
            return False
        self._set(claim.job_id, trainer_id=None)
        return True

    def requeue(self, claim: Claim) -> bool:
        if not self._holds(claim, "running"):
            return False
        job = self.jobs[claim.job_id]
        self._set(claim.job_id, state="queued", attempts=job.attempts - 1, trainer_id=None)
        return True

    def recover(self, job_id: int) -> None:
        """What :meth:`JobStore.recover_orphans` does to a stale job."""
        job = self.jobs[job_id]
        self._set(job_id, state="queued", trainer_id=None, fence_token=job.fence_token + 1)

    def next_queued(self) -> int | None:
        return min((i for i, j in self.jobs.items() if j.state == "queued"), default=None)

    def state(self, job_id: int) -> JobState:
        return self.jobs[job_id].state


def test_process_job_when_training_succeeds_marks_succeeded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = FakeQueue(1)
    monkeypatch.setattr(service, "train_job", lambda *_: TrainedModel("m", "4", "run"))

    trained = process_job(TrainerSettings(), queue, 1, threading.Event())

    assert trained == TrainedModel("m", "4", "run")
    assert queue.jobs[1].state == "succeeded" and queue.jobs[1].model_version == "4"
    assert queue.jobs[1].attempts == 1


def test_process_job_when_training_raises_marks_failed_with_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = FakeQueue(1)

    def boom(*_: object) -> TrainedModel:
        raise LookupError("dataset 'nope' not found")

    monkeypatch.setattr(service, "train_job", boom)

    assert process_job(TrainerSettings(), queue, 1, threading.Event()) is None
    assert queue.state(1) == "failed"
    assert queue.jobs[1].reason == "LookupError: dataset 'nope' not found"


def test_process_job_when_already_claimed_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = FakeQueue(1)
    queue.claim(1, "other-trainer")
    monkeypatch.setattr(service, "train_job", lambda *_: pytest.fail("must not train"))

    assert process_job(TrainerSettings(), queue, 1, threading.Event()) is None
    assert queue.state(1) == "running"


def test_process_job_when_interrupted_requeues_without_counting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = FakeQueue(1)

    def interrupted(*_: object) -> TrainedModel:
        raise JobInterrupted("stopping")

    monkeypatch.setattr(service, "train_job", interrupted)

    process_job(TrainerSettings(), queue, 1, threading.Event())

    assert queue.state(1) == "queued" and queue.jobs[1].attempts == 0


def test_heartbeat_when_block_runs_beats_periodically() -> None:
    queue = FakeQueue(1)
    job = queue.claim(1, "t1")
    assert job is not None
    with heartbeat(queue, job.claim, every_s=0.02):
        time.sleep(0.15)
    beats = queue.beats
    time.sleep(0.05)

    assert beats >= 3 and queue.beats == beats  # stopped with the block


def test_heartbeat_when_job_cancelled_calls_on_lost_once_and_stops() -> None:
    queue = FakeQueue(1)
    job = queue.claim(1, "t1")
    assert job is not None
    lost = threading.Event()
    with heartbeat(queue, job.claim, every_s=0.02, on_lost=lost.set):
        time.sleep(0.06)
        queue._set(1, state="cancelled")
        assert lost.wait(1.0)
        beats = queue.beats
        time.sleep(0.08)

    assert queue.beats == beats  # no beating a job that is gone


def test_process_job_when_cancelled_mid_training_leaves_it_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = FakeQueue(1)

    def train_until_cancelled(
        settings: object, job: object, stop: object, cancelled: threading.Event, *_: object
    ) -> TrainedModel:
        queue._set(1, state="cancelled")  # the dashboard's cancel, while training runs
        assert cancelled.wait(5.0), "the heartbeat did not notice the cancellation"
        raise JobCancelled("cancelled")

    monkeypatch.setattr(service, "train_job", train_until_cancelled)

    result = process_job(TrainerSettings(heartbeat_s=0.02), queue, 1, threading.Event())

    assert result is None and queue.state(1) == "cancelled"  # not failed, not re-queued
    assert queue.jobs[1].trainer_id is None  # the trainer acknowledged: claim released


def _stolen_during_training(queue: FakeQueue) -> object:
    """A train_job stand-in: the trainer stalls, its job is recovered and re-claimed by
    trainer B, then the stalled trainer resumes and (being unaware) finishes training."""

    def train(settings: object, job: TrainingJob, *_: object) -> TrainedModel:
        queue.recover(job.job_id)
        assert queue.claim(job.job_id, "trainer-b") is not None
        return TrainedModel("m", "7", "run-a")

    return train


def test_process_job_when_claim_lost_then_finish_refused_and_winner_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = FakeQueue(1)
    monkeypatch.setattr(service, "train_job", _stolen_during_training(queue))

    result = process_job(TrainerSettings(trainer_id="trainer-a"), queue, 1, threading.Event())

    assert result is None  # its finish was refused
    job = queue.jobs[1]
    assert (job.state, job.trainer_id, job.fence_token) == ("running", "trainer-b", 3)
    assert job.model_version is None


def test_process_job_when_claim_lost_and_interrupted_does_not_requeue_the_winners_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = FakeQueue(1)

    def stolen_then_stopping(settings: object, job: TrainingJob, *_: object) -> TrainedModel:
        queue.recover(job.job_id)
        queue.claim(job.job_id, "trainer-b")
        raise JobInterrupted("stopping")

    monkeypatch.setattr(service, "train_job", stolen_then_stopping)

    process_job(TrainerSettings(trainer_id="trainer-a"), queue, 1, threading.Event())

    assert (queue.state(1), queue.jobs[1].trainer_id) == ("running", "trainer-b")


def test_process_job_when_claim_lost_and_training_fails_does_not_fail_the_winners_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = FakeQueue(1)

    def stolen_then_boom(settings: object, job: TrainingJob, *_: object) -> TrainedModel:
        queue.recover(job.job_id)
        queue.claim(job.job_id, "trainer-b")
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(service, "train_job", stolen_then_boom)

    process_job(TrainerSettings(trainer_id="trainer-a"), queue, 1, threading.Event())

    assert (queue.state(1), queue.jobs[1].reason) == ("running", None)


def test_heartbeat_when_job_reclaimed_by_another_trainer_calls_on_lost() -> None:
    queue = FakeQueue(1)
    job = queue.claim(1, "trainer-a")
    assert job is not None
    lost = threading.Event()
    with heartbeat(queue, job.claim, every_s=0.02, on_lost=lost.set):
        queue.recover(1)
        queue.claim(1, "trainer-b")
        assert lost.wait(1.0)

    assert queue.jobs[1].trainer_id == "trainer-b"


def test_process_job_passes_a_fence_check_that_fails_once_the_claim_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = FakeQueue(1)
    seen: list[bool] = []

    def train(
        settings: object,
        job: TrainingJob,
        stop: object,
        cancelled: object,
        holds_claim: Callable[[], bool],
    ) -> TrainedModel:
        seen.append(holds_claim())
        queue.recover(job.job_id)
        seen.append(holds_claim())
        raise JobCancelled("lost")

    monkeypatch.setattr(service, "train_job", train)

    process_job(TrainerSettings(trainer_id="trainer-a"), queue, 1, threading.Event())

    assert seen == [True, False]
    assert queue.state(1) == "queued"  # recovery's state stays; nothing acknowledged
