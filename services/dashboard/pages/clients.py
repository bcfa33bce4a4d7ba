"""Clients page: each client the caller may see with its data retention (admins: their own
client's, read-only); a superadmin changes a client's retention here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from services.dashboard import tenancy
from services.dashboard.auth import Principal
from services.dashboard.deps import AdminUser, ResourcesDep, SessionDep, SuperadminUser
from services.dashboard.errors import Invalid
from services.dashboard.pages.render import blank_to_none, field_errors, redirect, render
from services.dashboard.tenancy import ClientChange
from vidpipe.ids import ID_PATTERN

router = APIRouter()
ClientId = Annotated[str, Path(pattern=ID_PATTERN)]


class RetentionForm(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"retention_days": "90"}]}
    )

    retention_days: str = ""  # blank: the platform default
    csrf_token: str = ""

    def to_change(self) -> ClientChange:
        return ClientChange.model_validate({"retention_days": blank_to_none(self.retention_days)})


def _page(
    request: Request,
    user: Principal,
    conn: SessionDep,
    resources: ResourcesDep,
    errors: dict[str, str] | None = None,
    failed: tuple[str, RetentionForm] | None = None,
    status_code: int = 200,
) -> Response:
    default = resources.settings.retention
    listed = [c.with_default(default) for c in tenancy.list_clients(conn, user)]
    return render(
        request,
        "clients.html",
        user,
        status_code=status_code,
        clients=listed,
        default_days=default.default_days,
        errors=errors or {},
        failed_client=failed[0] if failed else None,
        failed_form=failed[1] if failed else None,
    )


@router.get("/clients", summary="Clients page: retention of each client you may see")
def clients_page(
    request: Request, user: AdminUser, conn: SessionDep, resources: ResourcesDep
) -> Response:
    return _page(request, user, conn, resources)


@router.post("/clients/{client_id}/retention", summary="Set a client's retention (form)")
def save_retention(
    request: Request,
    user: SuperadminUser,
    conn: SessionDep,
    resources: ResourcesDep,
    client_id: ClientId,
    form: Annotated[RetentionForm, Form()],
) -> Response:
    tenancy.get_client(conn, user, client_id)  # 404 for an unknown client
    try:
        saved = tenancy.set_retention(conn, client_id, form.to_change())
    except (ValidationError, Invalid) as exc:
        failed = (client_id, form)
        return _page(request, user, conn, resources, field_errors(exc), failed, 422)
    days = saved.with_default(resources.settings.retention).effective_retention_days
    kind = "its own" if saved.retention_days is not None else "the platform default"
    return redirect(request, "/clients", f"{client_id}: data kept {days} days ({kind}).")
