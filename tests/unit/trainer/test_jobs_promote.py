"""Gate decisions, crash recovery rules and job state transitions with an in-memory queue."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError

from services.trainer import service
from services.trainer.announce import TrainingJobQueued
from services.trainer.jobs import (
    JobSpec,
    JobState,
    ModelUri,
    TrainingJob,
    after_crash,
    dataset_name,
    heartbeat,
    normalize_architecture,
    parse_model_uri,
)
from services.trainer.promote import decide
from services.trainer.service import JobCancelled, JobInterrupted, TrainedModel, process_job
from services.trainer.settings import TrainerSettings


class FakeQueue:
    """:class:`services.trainer.jobs.JobQueue` in memory, with the same transitions."""

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


def test_after_crash_when_attempts_left_requeues_else_fails() -> None:
    assert after_crash(1, 3) == ("queued", None)
    state, reason = after_crash(3, 3)
    assert state == "failed" and reason is not None and "3 times" in reason


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


def test_names_when_normalized_follow_conventions() -> None:
    assert normalize_architecture("ssdlite") == "ssdlite320_mobilenet_v3_large"
    assert normalize_architecture("fasterrcnn") == "fasterrcnn_mobilenet_v3_large_320_fpn"
    assert dataset_name("acme/set/annotations.json") == "acme/set"
    assert dataset_name("acme/set/") == "acme/set"
    assert parse_model_uri("models:/m@candidate") == ModelUri("m", "candidate", None)
    assert parse_model_uri("models:/m/3") == ModelUri("m", None, "3")
    assert TrainingJobQueued(job_id=5).model_dump() == {"schema_version": 1, "job_id": 5}


def test_cli_when_help_requested_lists_commands() -> None:
    import typer
    from typer.testing import CliRunner

    from services.trainer.cli import promote_cmd, train_app

    app = typer.Typer()
    app.add_typer(train_app, name="train")
    app.command("promote")(promote_cmd)
    runner = CliRunner()

    submit = runner.invoke(app, ["train", "submit", "--help"])
    promote = runner.invoke(app, ["promote", "--help"])

    assert submit.exit_code == 0 and "--eval-dataset" in submit.output
    assert "ssdlite" in submit.output and "fasterrcnn" in submit.output
    assert promote.exit_code == 0 and "--force" in promote.output


def _spec(**changes: object) -> JobSpec:
    return JobSpec.model_validate(
        {"client_id": "acme", "dataset": "acme/dock", "architecture": "ssdlite", **changes}
    )


@pytest.mark.parametrize(
    ("changes", "stored"),
    [
        ({}, ("acme/dock", None, "ssdlite320_mobilenet_v3_large")),
        (
            {"dataset": "acme/dock/annotations.json"},
            ("acme/dock", None, "ssdlite320_mobilenet_v3_large"),
        ),
        (
            {"eval_dataset": "vtest-persons", "architecture": "fasterrcnn"},
            ("acme/dock", "vtest-persons", "fasterrcnn_mobilenet_v3_large_320_fpn"),
        ),
    ],
)
def test_job_spec_when_valid_then_names_normalized(
    changes: dict[str, object], stored: tuple[str, str | None, str]
) -> None:
    spec = _spec(**changes)
    assert (spec.dataset, spec.eval_dataset, spec.architecture) == stored


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "other/dock"}, "belongs to another client"),
        ({"eval_dataset": "other/holdout"}, "belongs to another client"),
        ({"dataset": "acme/Dock Set"}, "is invalid"),
        ({"architecture": "fcos_resnet50_fpn"}, "unsupported architecture"),
        ({"base_model": "coco-centernet"}, "models:/NAME@ALIAS"),
    ],
)
def test_job_spec_when_invalid_then_rejected_with_reason(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _spec(**changes)
