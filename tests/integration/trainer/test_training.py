"""Training jobs end to end: Postgres job row, S3 dataset, MLflow run and registry, and the
detector's own loader running the registered candidate."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from services.trainer.__main__ import run
from services.trainer.service import TrainedModel, process_job
from services.trainer.settings import TrainerSettings
from tests.integration.trainer.conftest import Scope, TrainedJob, spec
from vidpipe.bus import announce_job
from vidpipe.events import ModelRef
from vidpipe.jobs import JobStore
from vidpipe_ml.cache import ModelCache
from vidpipe_ml.inference import detect_batch

pytestmark = pytest.mark.integration


def test_job_when_dataset_exists_succeeds_with_run_and_candidate(
    trained: TrainedJob, trainer_settings: TrainerSettings, scope: Scope
) -> None:
    uri = trainer_settings.mlflow.tracking_uri
    client = MlflowClient(uri, uri)

    run = client.get_run(trained.model.run_id)
    candidate = client.get_model_version_by_alias(scope.model_name, "candidate")

    assert trained.job.state == "succeeded" and trained.job.reason is None
    assert trained.job.model_version == trained.model.version
    assert trained.job.attempts == 1 and trained.job.finished_at is not None
    assert run.data.params["architecture"] == "ssdlite320_mobilenet_v3_large"
    assert run.data.params["epochs"] == "1" and run.data.params["dataset"] == scope.dataset
    assert {"loss", "images_per_s", "eval_map", "eval_map_50"} <= set(run.data.metrics)
    assert run.data.metrics["loss"] > 0
    assert candidate.version == trained.model.version
    assert json.loads(candidate.tags["labels"]) == ["__background__", "blue-box", "red-box"]


def test_candidate_when_loaded_by_detector_cache_detects_on_a_frame(
    trained: TrainedJob, trainer_settings: TrainerSettings, scope: Scope
) -> None:
    cache = ModelCache(trainer_settings.mlflow.tracking_uri, torch.device("cpu"))
    loaded = cache.get(ModelRef(name=scope.model_name, version=trained.model.version))
    frame = torch.from_numpy(np.zeros((120, 200, 3), np.uint8)).permute(2, 0, 1)

    found = detect_batch(loaded, [frame], torch.device("cpu"))

    assert loaded.labels == ("__background__", "blue-box", "red-box")
    assert len(found) == 1
    assert all(d.label in loaded.labels for d in found[0])


def test_job_when_dataset_missing_fails_with_clear_reason(
    scope: Scope, trainer_settings: TrainerSettings, queue: JobStore
) -> None:
    job = queue.insert(spec(scope, dataset=f"missing-{scope.tag}"))

    assert process_job(trainer_settings, queue, job.job_id, threading.Event()) is None

    failed = queue.get(job.job_id)
    assert failed is not None and failed.state == "failed"
    assert failed.reason is not None
    assert f"dataset 'missing-{scope.tag}' not found" in failed.reason


async def test_trainer_loop_when_job_announced_runs_it_to_a_final_state(
    scope: Scope, trainer_settings: TrainerSettings, queue: JobStore
) -> None:
    """The ``vidpipe run trainer`` loop picks the job up (Postgres poll or the event) and
    commits; a missing dataset keeps the job fast."""
    job = queue.insert(spec(scope, dataset=f"absent-{scope.tag}"))
    assert await announce_job(trainer_settings.kafka, job.job_id)
    stop = asyncio.Event()
    loop_task = asyncio.create_task(run(trainer_settings, stop))
    try:
        for _ in range(120):
            current = queue.get(job.job_id)
            if current is not None and current.state == "failed":
                break
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.wait_for(loop_task, timeout=30)
    final = queue.get(job.job_id)
    assert final is not None and final.state == "failed" and final.attempts == 1


def test_job_when_base_model_given_fine_tunes_from_its_weights(
    trained: TrainedJob, trainer_settings: TrainerSettings, scope: Scope, queue: JobStore
) -> None:
    """Starting from the registered candidate (same architecture and labels) copies every
    tensor; the run and the new version record which version it started from."""
    base = f"models:/{scope.model_name}@candidate"
    job = queue.insert(spec(scope, base_model=base))

    model = process_job(trainer_settings, queue, job.job_id, threading.Event())

    done = queue.get(job.job_id)
    assert model is not None, f"training failed: {done and done.reason}"
    uri = trainer_settings.mlflow.tracking_uri
    client = MlflowClient(uri, uri)
    params = client.get_run(model.run_id).data.params
    pinned = f"models:/{scope.model_name}/{trained.model.version}"
    assert params["base_model"] == pinned
    copied, total = params["base_tensors_copied"].split("/")
    assert copied == total and int(total) > 100
    assert client.get_model_version(scope.model_name, model.version).tags["base_model"] == pinned
    assert int(model.version) > int(trained.model.version)


def test_job_when_base_model_not_a_trained_detector_fails_with_reason(
    trained: TrainedJob, trainer_settings: TrainerSettings, scope: Scope, queue: JobStore
) -> None:
    from vidpipe_ml.registry import ensure_centernet

    assets = Path(__file__).resolve().parents[3] / "var" / "assets" / "centernet"
    ensure_centernet(trainer_settings.mlflow.tracking_uri, weights_dir=assets)
    job = queue.insert(spec(scope, base_model="models:/coco-centernet@production"))

    assert process_job(trainer_settings, queue, job.job_id, threading.Event()) is None

    failed = queue.get(job.job_id)
    assert failed is not None and failed.state == "failed"
    assert "was not trained by the trainer" in (failed.reason or "")


def test_job_when_cancelled_while_training_stops_and_registers_nothing(
    trained: TrainedJob, trainer_settings: TrainerSettings, scope: Scope, queue: JobStore
) -> None:
    """A cancel (``vidpipe train cancel``; the dashboard's is the same UPDATE) reaches a
    training that would otherwise run 10,000 epochs: it stops at the next heartbeat and the
    state stays ``cancelled``."""
    job = queue.insert(spec(scope, epochs=10_000))
    outcome: list[TrainedModel | None] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            process_job(trainer_settings, queue, job.job_id, threading.Event())
        )
    )
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while (queue.get(job.job_id) or job).state != "running":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.2)
        time.sleep(1.0)  # well into training
        assert queue.cancel(job.job_id, "cancelled by pytest") is not None
    finally:
        worker.join(timeout=60)
    assert not worker.is_alive(), "training did not stop after the cancellation"
    final = queue.get(job.job_id)
    assert outcome == [None]
    assert final is not None and final.state == "cancelled" and final.model_version is None
    uri = trainer_settings.mlflow.tracking_uri
    versions = MlflowClient(uri, uri).search_model_versions(f"name = '{scope.model_name}'")
    assert all(v.tags.get("job_id") != str(job.job_id) for v in versions)


def test_cli_submit_when_dataset_missing_or_foreign_refuses_before_queueing(
    scope: Scope, queue: JobStore
) -> None:
    from typer.testing import CliRunner

    from vidpipe_cli.main import app

    before = len(queue.list_jobs(scope.client_id))
    base = ["train", "submit", "--client", scope.client_id, "--epochs", "1"]

    missing = CliRunner().invoke(app, [*base, "--dataset", f"{scope.client_id}/nope"])
    foreign = CliRunner().invoke(app, [*base, "--dataset", "someone-else/set"])
    queued = CliRunner().invoke(app, [*base, "--dataset", scope.dataset])

    assert missing.exit_code == 2 and "not found" in missing.output
    assert scope.dataset in missing.output  # the message lists what exists
    assert foreign.exit_code == 2 and "belongs to another client" in foreign.output
    assert queued.exit_code == 0, queued.output
    job_id = int(queued.output.split()[1])
    cancelled = CliRunner().invoke(app, ["train", "cancel", str(job_id)])
    final = queue.get(job_id)
    assert cancelled.exit_code == 0 and final is not None and final.state == "cancelled"
    assert len(queue.list_jobs(scope.client_id)) == before + 1
