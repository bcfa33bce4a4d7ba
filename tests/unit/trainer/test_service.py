"""The trainer's job handling with an in-memory queue: claims, outcomes, heartbeats."""

from __future__ import annotations

import threading
import time
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
from vidpipe.jobs import JobState, TrainingJob

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class FakeQueue:
    """:class:`services.trainer.service.JobQueue` in memory, with the same transitions."""

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

    def claim(self, job_id: int) -> TrainingJob | None:
        job = self.jobs.get(job_id)
        if job is None or job.state != "queued":
            return None
        self._set(job_id, state="running", attempts=job.attempts + 1)
        return self.jobs[job_id]

    def heartbeat(self, job_id: int) -> bool:
        self.beats += 1
        return self.jobs[job_id].state == "running"

    def succeed(self, job_id: int, model_name: str, model_version: str, run_id: str) -> None:
        self._set(job_id, state="succeeded", model_name=model_name, model_version=model_version)

    def fail(self, job_id: int, reason: str) -> None:
        self._set(job_id, state="failed", reason=reason)

    def requeue(self, job_id: int) -> None:
        self._set(job_id, state="queued", attempts=self.jobs[job_id].attempts - 1)

    def next_queued(self) -> int | None:
        return min((i for i, j in self.jobs.items() if j.state == "queued"), default=None)

    def recover_orphans(self, stale_after_s: float, max_attempts: int) -> list[TrainingJob]:
        return []

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
    queue.claim(1)
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
    queue.claim(1)
    with heartbeat(queue, 1, every_s=0.02):
        time.sleep(0.15)
    beats = queue.beats
    time.sleep(0.05)

    assert beats >= 3 and queue.beats == beats  # stopped with the block


def test_heartbeat_when_job_cancelled_calls_on_lost_once_and_stops() -> None:
    queue = FakeQueue(1)
    queue.claim(1)
    lost = threading.Event()
    with heartbeat(queue, 1, every_s=0.02, on_lost=lost.set):
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
        settings: object, job: object, stop: object, cancelled: threading.Event
    ) -> TrainedModel:
        queue._set(1, state="cancelled")  # the dashboard's cancel, while training runs
        assert cancelled.wait(5.0), "the heartbeat did not notice the cancellation"
        raise JobCancelled("cancelled")

    monkeypatch.setattr(service, "train_job", train_until_cancelled)

    result = process_job(TrainerSettings(heartbeat_s=0.02), queue, 1, threading.Event())

    assert result is None and queue.state(1) == "cancelled"  # not failed, not re-queued
