"""Training jobs page: the client's jobs and a form to queue one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from services.dashboard import jobs, tenancy
from services.dashboard.auth import Principal
from services.dashboard.deps import CurrentUser, OperatorUser, ResourcesDep, SessionDep
from services.dashboard.errors import Invalid
from services.dashboard.jobs import JobIn
from services.dashboard.pages.render import CsrfForm, blank_to_none, field_errors, redirect, render
from vidpipe.jobs import ARCHITECTURE_NAMES

router = APIRouter()


class JobForm(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "dataset": "acme/dock",
                    "architecture": "ssdlite320_mobilenet_v3_large",
                    "epochs": "5",
                }
            ]
        },
    )

    client_id: str = ""
    dataset: str = ""
    eval_dataset: str = ""
    base_model: str = ""
    architecture: str = ""
    epochs: str = "10"
    batch_size: str = "4"
    learning_rate: str = "0.005"
    image_size: str = "320"
    csrf_token: str = ""

    def to_job(self) -> JobIn:
        values = self.model_dump(exclude={"csrf_token"})
        return JobIn.model_validate({k: blank_to_none(v) for k, v in values.items()})


def _page(
    request: Request,
    user: Principal,
    conn: SessionDep,
    resources: ResourcesDep,
    form: JobForm | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "jobs.html",
        user,
        status_code=status_code,
        jobs=jobs.list_jobs(resources, user),
        form=form or JobForm(),
        errors=errors or {},
        architectures=ARCHITECTURE_NAMES,
        clients=tenancy.list_clients(conn, user) if user.is_superadmin else [],
    )


@router.get("/jobs", summary="Training jobs page")
def jobs_page(
    request: Request, user: CurrentUser, conn: SessionDep, resources: ResourcesDep
) -> Response:
    return _page(request, user, conn, resources)


@router.post("/jobs", summary="Queue a training job (form)")
def submit_job(
    request: Request,
    user: OperatorUser,
    conn: SessionDep,
    resources: ResourcesDep,
    form: Annotated[JobForm, Form()],
) -> Response:
    try:
        job = jobs.submit_job(conn, resources, user, form.to_job())
    except (ValidationError, Invalid) as exc:
        return _page(request, user, conn, resources, form, field_errors(exc), 422)
    return redirect(request, "/jobs", f"Training job {job.job_id} queued.")


@router.post("/jobs/{job_id}/cancel", summary="Cancel a training job (form)")
def cancel_job(
    request: Request,
    user: OperatorUser,
    resources: ResourcesDep,
    job_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    form: Annotated[CsrfForm, Form()],
) -> Response:
    jobs.cancel_job(resources, user, job_id)
    return redirect(request, "/jobs", f"Training job {job_id} cancelled.")
