"""Trainer fixtures on the real stack: a fresh client, a synthetic dataset in S3, a trainer
scoped to that client (the database is shared), and one trained ``candidate`` version.

Everything created is removed afterwards: the client (cascading to its jobs), the dataset
objects, the registered models, accuracy report and promotion rows.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from services.trainer.service import TrainedModel, process_job
from services.trainer.settings import TrainerSettings
from tests.unit.trainer.synthetic import synthetic_scenes
from vidpipe.datasets import upload_dataset
from vidpipe.db import create_engine
from vidpipe.jobs import JobSpec, JobStore, TrainingJob
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings
from vidpipe.topics import DATASETS_BUCKET


@dataclass(frozen=True)
class Scope:
    client_id: str
    dataset: str
    model_name: str
    tag: str


@pytest.fixture(scope="module")
def scope(stack: None, stack_settings: ServiceSettings) -> Iterator[Scope]:
    tag = uuid.uuid4().hex[:8]
    client_id = f"it-train-{tag}"
    scope = Scope(client_id, f"{client_id}/train", f"it-train-{tag}", tag)
    dsn = stack_settings.postgres.dsn.get_secret_value()
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO clients (client_id, name) VALUES (%s, %s)", (scope.client_id,) * 2
        )
    store = ObjectStore(stack_settings.s3)
    coco, files = synthetic_scenes(count=6, size=160, seed=1)
    upload_dataset(store, scope.dataset, coco, files)
    try:
        yield scope
    finally:
        with psycopg.connect(dsn) as conn:
            conn.execute("DELETE FROM clients WHERE client_id = %s", (scope.client_id,))
            conn.execute("DELETE FROM accuracy_reports WHERE dataset = %s", (scope.dataset,))
            conn.execute("DELETE FROM model_promotions WHERE model_name = %s", (scope.model_name,))
        store.delete_prefix(DATASETS_BUCKET, f"{scope.dataset}/")
        uri = stack_settings.mlflow.tracking_uri
        with contextlib.suppress(MlflowException):  # never registered if training failed
            MlflowClient(uri, uri).delete_registered_model(scope.model_name)


@pytest.fixture(scope="module")
def trainer_settings(scope: Scope) -> TrainerSettings:
    """Tiny training (2 optimizer steps per epoch), fast heartbeats, this client only."""
    return TrainerSettings(
        max_iterations_per_epoch=2,
        heartbeat_s=0.5,
        torch_threads=2,
        clients=[scope.client_id],
        group_id=f"it-trainer-{scope.tag}",
        experiment="it-training",
        poll_s=0.5,
    )


@pytest.fixture(scope="module")
def queue(trainer_settings: TrainerSettings) -> Iterator[JobStore]:
    engine = create_engine(trainer_settings.postgres)
    yield JobStore(engine, trainer_settings.clients)
    engine.dispose()


def spec(scope: Scope, **changes: object) -> JobSpec:
    """1 epoch of SSDlite on the synthetic set at 160 px, registered as the scope's model."""
    base = JobSpec(
        client_id=scope.client_id,
        dataset=scope.dataset,
        architecture="ssdlite",
        epochs=1,
        batch_size=2,
        learning_rate=0.005,
        image_size=160,
        model_name=scope.model_name,
        created_by="pytest",
    )
    return base.model_copy(update=changes)


@dataclass(frozen=True)
class TrainedJob:
    job: TrainingJob
    model: TrainedModel


@pytest.fixture(scope="module")
def trained(scope: Scope, trainer_settings: TrainerSettings, queue: JobStore) -> TrainedJob:
    """One real training job run to the end (the trainer's own ``process_job``)."""
    submitted = queue.insert(spec(scope))
    model = process_job(trainer_settings, queue, submitted.job_id, threading.Event())
    job = queue.get(submitted.job_id)
    assert job is not None
    assert model is not None, f"training failed: {job.reason}"
    return TrainedJob(job=job, model=model)
