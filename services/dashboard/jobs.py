"""Training jobs as the dashboard serves them: the caller's client scope on top of the one
implementation of submission and cancellation (:mod:`vidpipe.jobs`), then the job is
announced on ``training.jobs.v1`` so a trainer starts it at once."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.dashboard.auth import Principal
from services.dashboard.errors import Invalid, TooManyRequests
from services.dashboard.resources import Resources
from services.dashboard.tenancy import acting_client, client_filter
from vidpipe import jobs
from vidpipe.bus import announce_job
from vidpipe.datasets import DATASET_REFERENCE_PATTERN, StoredDatasets, dataset_name
from vidpipe.ids import ID_PATTERN
from vidpipe.jobs import (
    ARCHITECTURE_NAMES,
    JobNotFound,
    JobQuotaExceeded,
    JobRejected,
    JobSpec,
    JobState,
    JobStore,
    TrainingJob,
    check_architecture,
)

_EXAMPLE: dict[str, Any] = {
    "dataset": "acme/dock",
    "eval_dataset": "vtest-persons",
    "base_model": "models:/acme-ssdlite320_mobilenet_v3_large@production",
    "architecture": "ssdlite320_mobilenet_v3_large",
    "epochs": 10,
    "batch_size": 4,
    "learning_rate": 0.005,
    "image_size": 320,
}
_DEFAULTS = JobSpec.model_fields


class JobIn(BaseModel):
    """A job as the API takes it; the rules are :class:`vidpipe.jobs.JobSpec`'s."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    client_id: str | None = Field(default=None, pattern=ID_PATTERN, description="superadmin only")
    dataset: str = Field(
        pattern=DATASET_REFERENCE_PATTERN,
        description="dataset in s3://datasets: shared NAME or your CLIENT/NAME",
    )
    eval_dataset: str | None = Field(default=None, pattern=DATASET_REFERENCE_PATTERN)
    base_model: str | None = Field(
        default=None, max_length=300, description="models:/NAME@ALIAS or models:/NAME/VERSION"
    )
    architecture: str = Field(json_schema_extra={"enum": list(ARCHITECTURE_NAMES)})
    epochs: int = Field(default=_DEFAULTS["epochs"].default, ge=1, le=1000)
    batch_size: int = Field(default=_DEFAULTS["batch_size"].default, ge=1, le=256)
    learning_rate: float = Field(default=_DEFAULTS["learning_rate"].default, gt=0, le=1)
    image_size: int = Field(default=_DEFAULTS["image_size"].default, ge=64, le=2048)

    _architecture = field_validator("architecture")(check_architecture)

    @field_validator("dataset", "eval_dataset")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else dataset_name(value)


def _spec(client: str, principal: Principal, body: JobIn) -> JobSpec:
    try:
        return JobSpec(
            client_id=client,
            created_by=principal.name,
            **body.model_dump(exclude={"client_id"}),
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else None
        raise Invalid(error["msg"].removeprefix("Value error, "), field=field) from exc


def submit_job(
    conn: sa.Connection, resources: Resources, principal: Principal, body: JobIn
) -> TrainingJob:
    """Validate against storage and registry, insert the queued row, announce it.

    Must be called from a worker thread (it runs the Kafka announcement with
    ``asyncio.run``): FastAPI runs the sync routes that call it in its thread pool.

    Raises:
        Invalid: bad field values, an unknown (or another client's) dataset or base model,
            a job larger than the quota (HTTP 422 naming the field).
        TooManyRequests: the client has as many jobs queued or running as its quota allows.
    """
    spec = _spec(acting_client(conn, principal, body.client_id), principal, body)
    try:
        job = jobs.submit_job(
            JobStore(resources.engine),
            spec,
            StoredDatasets(resources.objects),
            resources.catalog,
            resources.settings.job_quota,
        )
    except JobRejected as exc:
        raise Invalid(str(exc), field=exc.field) from exc
    except JobQuotaExceeded as exc:
        raise TooManyRequests(str(exc), retry_after_s=60) from exc
    asyncio.run(announce_job(resources.settings.kafka, job.job_id))
    return job


def list_jobs(
    resources: Resources,
    principal: Principal,
    client_id: str | None = None,
    state: JobState | None = None,
    limit: int = 100,
) -> list[TrainingJob]:
    return JobStore(resources.engine).list_jobs(client_filter(principal, client_id), state, limit)


def get_job(resources: Resources, principal: Principal, job_id: int) -> TrainingJob:
    """Raises :class:`vidpipe.jobs.JobNotFound` (404) for another client's job."""
    job = JobStore(resources.engine).get(job_id)
    if job is None or not principal.sees(job.client_id):
        raise JobNotFound(f"training job {job_id} not found")
    return job


def cancel_job(resources: Resources, principal: Principal, job_id: int) -> TrainingJob:
    """queued/running -> cancelled (the trainer stops a running job when it sees it).

    Raises ``JobNotFound`` (404) or ``JobFinished`` (409)."""
    scope = None if principal.is_superadmin else principal.client_id
    return jobs.cancel_job(JobStore(resources.engine), job_id, principal.name, scope)
