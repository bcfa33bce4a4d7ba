"""Training jobs end to end: Postgres job row, S3 dataset, MLflow run and registry, and the
detector's own loader running the registered candidate."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from services.detector.inference import detect_batch
from services.detector.model_cache import ModelCache
from services.trainer.__main__ import run
from services.trainer.announce import announce
from services.trainer.jobs import JobStore
from services.trainer.service import process_job
from services.trainer.settings import TrainerSettings
from tests.integration.trainer.conftest import Scope, TrainedJob, spec
from vidpipe.events import ModelRef

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
    job = queue.submit(spec(scope, dataset=f"missing-{scope.tag}"))

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
    job = queue.submit(spec(scope, dataset=f"absent-{scope.tag}"))
    await announce(trainer_settings.kafka, job.job_id)
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
