"""Training jobs: submit (queued for the trainer), list, get, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from services.dashboard import jobs
from services.dashboard.deps import CurrentUser, Expensive, OperatorUser, ResourcesDep, SessionDep
from services.dashboard.jobs import JobIn
from vidpipe.ids import ID_PATTERN
from vidpipe.jobs import JobState, TrainingJob

router = APIRouter(prefix="/jobs", tags=["training jobs"])
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Queue a training job (per-client quotas: jobs at once, job size; 429 beyond)",
    dependencies=[Expensive],
)
def submit(
    user: OperatorUser, conn: SessionDep, resources: ResourcesDep, body: JobIn
) -> TrainingJob:
    return jobs.submit_job(conn, resources, user, body)


@router.get("")
def list_jobs(
    user: CurrentUser,
    resources: ResourcesDep,
    client_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TrainingJob]:
    return jobs.list_jobs(resources, user, client_id, state, limit)


@router.get("/{job_id}")
def get_job(user: CurrentUser, resources: ResourcesDep, job_id: JobId) -> TrainingJob:
    return jobs.get_job(resources, user, job_id)


@router.post("/{job_id}/cancel", summary="Cancel a queued or running job")
def cancel_job(user: OperatorUser, resources: ResourcesDep, job_id: JobId) -> TrainingJob:
    return jobs.cancel_job(resources, user, job_id)
