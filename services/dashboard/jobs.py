"""Training jobs: the dashboard queues them (state ``queued``) and announces them on
``training.jobs.v1``; the trainer consumes them.

Datasets are named as in the ``datasets`` bucket (:data:`vidpipe.topics.DATASET_NAME`): a
shared set (``vtest-persons``) or the client's own (``acme/dock``), never another client's,
and must exist. ``base_model`` is a registry URI (``models:/NAME@ALIAS`` or
``models:/NAME/VERSION``) that must exist. The architectures are the trainer's.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.dashboard.auth import Principal
from services.dashboard.db import training_jobs
from services.dashboard.errors import Conflict, Invalid, NotFound
from services.dashboard.resources import Resources
from services.dashboard.tenancy import ID_PATTERN, acting_client, client_filter
from services.evaluator.datasets import annotations_key
from services.trainer.announce import announce
from services.trainer.jobs import ARCHITECTURES, dataset_name, parse_model_uri
from vidpipe.topics import DATASET_NAME, DATASETS_BUCKET, dataset_owner

log = logging.getLogger(__name__)

#: torchvision builder names the trainer supports, as the API takes them.
ARCHITECTURE_NAMES: tuple[str, ...] = tuple(ARCHITECTURES.values())
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
#: A dataset name, or the key of its COCO file (``acme/dock/annotations.json``).
DATASET_PATTERN = DATASET_NAME.pattern.removesuffix("$") + r"(/annotations\.json)?$"
_ANNOUNCE_TIMEOUT_S = 5.0
_EXAMPLE: dict[str, Any] = {
    "dataset": "acme/dock",
    "eval_dataset": "vtest-persons",
    "base_model": "models:/acme-ssdlite320_mobilenet_v3_large@production",
    "architecture": "ssdlite320_mobilenet_v3_large",
    "epochs": 10,
    "batch_size": 8,
    "learning_rate": 0.005,
    "image_size": 320,
}


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    client_id: str | None = Field(default=None, pattern=ID_PATTERN, description="superadmin only")
    dataset: str = Field(
        pattern=DATASET_PATTERN,
        description="dataset in s3://datasets: shared NAME or your CLIENT/NAME",
    )
    eval_dataset: str | None = Field(default=None, pattern=DATASET_PATTERN)
    base_model: str | None = Field(
        default=None, max_length=300, description="models:/NAME@ALIAS or models:/NAME/VERSION"
    )
    architecture: str = Field(json_schema_extra={"enum": list(ARCHITECTURE_NAMES)})
    epochs: int = Field(default=10, ge=1, le=1000)
    batch_size: int = Field(default=8, ge=1, le=256)
    learning_rate: float = Field(default=0.005, gt=0, le=1)
    image_size: int = Field(default=320, ge=64, le=2048)

    @field_validator("architecture")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in ARCHITECTURE_NAMES:
            raise ValueError(f"the trainer supports {', '.join(ARCHITECTURE_NAMES)}")
        return value

    @field_validator("dataset", "eval_dataset")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else dataset_name(value)


class JobOut(BaseModel):
    job_id: int
    client_id: str
    dataset: str
    eval_dataset: str | None
    base_model: str | None
    architecture: str
    epochs: int
    batch_size: int
    learning_rate: float
    image_size: int
    state: JobState
    reason: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    created_by: str | None


def _check_dataset(resources: Resources, client_id: str, name: str | None, field: str) -> None:
    if name is None:
        return
    owner = dataset_owner(name)  # the pattern already held
    if owner not in (None, client_id):
        raise Invalid(
            f"{field} must be a shared dataset or under your client's prefix '{client_id}/'",
            field=field,
        )
    if not resources.objects.exists(DATASETS_BUCKET, annotations_key(name)):
        raise Invalid(
            f"dataset {name!r} not found in s3://{DATASETS_BUCKET}; make one with "
            "`vidpipe datasets build` or `vidpipe datasets import`",
            field=field,
        )


def _check_base_model(resources: Resources, uri: str | None) -> None:
    if uri is None:
        return
    try:
        ref = parse_model_uri(uri)
    except ValueError:
        raise Invalid(
            "base_model must be models:/NAME@ALIAS or models:/NAME/VERSION", "base_model"
        ) from None
    try:
        resources.catalog.resolve(ref.name, ref.alias, ref.version)
    except Invalid as exc:
        raise Invalid(exc.message, field="base_model") from exc


def _announce(resources: Resources, job_id: int) -> None:
    """Publish the job on ``training.jobs.v1`` so a trainer starts it at once. Best effort:
    the row is committed and trainers also poll Postgres, so a broker outage only delays it."""
    try:
        asyncio.run(
            asyncio.wait_for(announce(resources.settings.kafka, job_id), _ANNOUNCE_TIMEOUT_S)
        )
    except Exception as exc:
        log.warning("training job not announced (trainers will poll it): %s", exc)


def submit_job(
    conn: sa.Connection, resources: Resources, principal: Principal, body: JobIn
) -> JobOut:
    """Validate against storage and registry, insert the queued row, announce it.

    Must be called from a worker thread (it runs the Kafka announcement with
    ``asyncio.run``): FastAPI runs the sync routes that call it in its thread pool.

    Raises:
        Invalid: unknown/foreign dataset, unknown base model (HTTP 422 naming the field).
    """
    client = acting_client(conn, principal, body.client_id)
    _check_dataset(resources, client, body.dataset, "dataset")
    _check_dataset(resources, client, body.eval_dataset, "eval_dataset")
    _check_base_model(resources, body.base_model)
    row = conn.execute(
        sa.insert(training_jobs)
        .values(
            client_id=client, created_by=principal.name, **body.model_dump(exclude={"client_id"})
        )
        .returning(training_jobs)
    ).one()
    conn.commit()
    job = JobOut.model_validate(row._mapping)
    _announce(resources, job.job_id)
    return job


def list_jobs(
    conn: sa.Connection,
    principal: Principal,
    client_id: str | None = None,
    state: JobState | None = None,
    limit: int = 100,
) -> list[JobOut]:
    t = training_jobs
    query = sa.select(t).order_by(t.c.job_id.desc()).limit(limit)
    only = client_filter(principal, client_id)
    if only is not None:
        query = query.where(t.c.client_id == only)
    if state is not None:
        query = query.where(t.c.state == state)
    return [JobOut.model_validate(r._mapping) for r in conn.execute(query)]


def get_job(conn: sa.Connection, principal: Principal, job_id: int) -> JobOut:
    row = conn.execute(
        sa.select(training_jobs).where(training_jobs.c.job_id == job_id)
    ).one_or_none()
    if row is None or not principal.sees(row.client_id):
        raise NotFound(f"training job {job_id} not found", field="job_id")
    return JobOut.model_validate(row._mapping)


def cancel_job(conn: sa.Connection, principal: Principal, job_id: int) -> JobOut:
    """queued/running -> cancelled (the trainer stops a running job when it sees it)."""
    job = get_job(conn, principal, job_id)
    t = training_jobs
    row = conn.execute(
        sa.update(t)
        .where(t.c.job_id == job_id, t.c.client_id == job.client_id)
        .where(t.c.state.in_(("queued", "running")))
        .values(
            state="cancelled",
            reason=f"cancelled by {principal.name}",
            updated_at=sa.func.now(),
            finished_at=sa.func.now(),
        )
        .returning(t)
    ).one_or_none()
    if row is None:
        raise Conflict(
            f"training job {job_id} is {job.state}; only queued or running jobs can be cancelled"
        )
    conn.commit()
    return JobOut.model_validate(row._mapping)
