"""Training jobs: the dashboard queues them (state ``queued``); the trainer consumes them.

Datasets are keys (prefixes) in the ``datasets`` bucket and must lie under the client's own
prefix ``{client_id}/``, so one client cannot train on another's data. ``base_model`` is an
MLflow URI (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``) that must exist.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from services.dashboard.auth import Principal
from services.dashboard.catalog import ModelCatalog
from services.dashboard.db import training_jobs
from services.dashboard.errors import Conflict, Invalid, NotFound
from services.dashboard.tenancy import ID_PATTERN, acting_client, client_filter

Architecture = Literal[
    "ssdlite320_mobilenet_v3_large",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
DATASET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9_.-]{1,255}){1,16}/?$"
_MODEL_URI = re.compile(
    r"^models:/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})(?:@([A-Za-z0-9_-]{1,64})|/([1-9][0-9]{0,8}))$"
)
_EXAMPLE: dict[str, Any] = {
    "dataset": "acme/vtest-labelled/annotations.json",
    "eval_dataset": "acme/vtest-holdout/annotations.json",
    "base_model": "models:/coco-centernet@production",
    "architecture": "ssdlite320_mobilenet_v3_large",
    "epochs": 10,
    "batch_size": 8,
    "learning_rate": 0.005,
    "image_size": 320,
}


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    client_id: str | None = Field(default=None, pattern=ID_PATTERN, description="superadmin only")
    dataset: str = Field(pattern=DATASET_PATTERN, description="COCO json key in s3://datasets")
    eval_dataset: str | None = Field(default=None, pattern=DATASET_PATTERN)
    base_model: str | None = Field(default=None, max_length=300, description="models:/NAME@ALIAS")
    architecture: Architecture
    epochs: int = Field(default=10, ge=1, le=1000)
    batch_size: int = Field(default=8, ge=1, le=256)
    learning_rate: float = Field(default=0.005, gt=0, le=1)
    image_size: int = Field(default=320, ge=64, le=2048)


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


def _check_dataset(client_id: str, key: str | None, field: str) -> None:
    if key is None:
        return
    if ".." in key.split("/"):
        raise Invalid(f"{field} must not contain '..'", field=field)
    if not key.startswith(f"{client_id}/"):
        raise Invalid(f"{field} must be under your client's prefix '{client_id}/'", field=field)


def _check_base_model(catalog: ModelCatalog, uri: str | None) -> None:
    if uri is None:
        return
    match = _MODEL_URI.fullmatch(uri)
    if match is None:
        raise Invalid("base_model must be models:/NAME@ALIAS or models:/NAME/VERSION", "base_model")
    try:
        catalog.resolve(match[1], match[2], match[3])
    except Invalid as exc:
        raise Invalid(exc.message, field="base_model") from exc


def submit_job(
    conn: sa.Connection, catalog: ModelCatalog, principal: Principal, body: JobIn
) -> JobOut:
    client = acting_client(conn, principal, body.client_id)
    _check_dataset(client, body.dataset, "dataset")
    _check_dataset(client, body.eval_dataset, "eval_dataset")
    _check_base_model(catalog, body.base_model)
    row = conn.execute(
        sa.insert(training_jobs)
        .values(
            client_id=client, created_by=principal.name, **body.model_dump(exclude={"client_id"})
        )
        .returning(training_jobs)
    ).one()
    conn.commit()
    return JobOut.model_validate(row._mapping)


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
