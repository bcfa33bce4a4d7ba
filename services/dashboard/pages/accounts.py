"""Account pages: your password and sessions (everyone); users and API keys of a client
(admins: their own client's, a superadmin any). Secrets appear once: a generated initial
password and a new API key are shown on the page answering the form, never again."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Request, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from services.dashboard import accounts, tenancy
from services.dashboard.accounts import ApiKeyIn, PasswordChange, UserChange, UserIn
from services.dashboard.auth import Principal
from services.dashboard.deps import AdminUser, CurrentUser, ResourcesDep, SessionDep
from services.dashboard.errors import Conflict, Forbidden, Invalid
from services.dashboard.pages.render import (
    CsrfForm,
    blank_to_none,
    field_errors,
    redirect,
    render,
)

router = APIRouter()
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class PasswordForm(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"current_password": "old passphrase", "new_password": "new passphrase"}]
        },
    )

    current_password: str = ""
    new_password: str = ""
    csrf_token: str = ""


class UserForm(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "ops@acme.example", "role": "operator"}]},
    )

    email: str = ""
    password: str = ""
    role: str = "viewer"
    client_id: str = ""
    csrf_token: str = ""


class UserActionForm(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"action": "role", "role": "viewer"}]}
    )

    action: Literal["role", "disable", "enable", "revoke", "delete"] = "role"
    role: str = ""
    csrf_token: str = ""


class KeyForm(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "ci uploader", "role": "viewer"}]}
    )

    name: str = ""
    role: str = "viewer"
    client_id: str = ""
    csrf_token: str = ""


@router.get("/account", summary="Your account page: password, sessions")
def account_page(request: Request, user: CurrentUser) -> Response:
    return render(request, "account.html", user, form=PasswordForm(), errors={})


@router.post("/account/password", summary="Change your password (form); you sign in again")
def change_password(
    request: Request,
    user: CurrentUser,
    conn: SessionDep,
    resources: ResourcesDep,
    form: Annotated[PasswordForm, Form()],
) -> Response:
    try:
        body = PasswordChange(
            current_password=form.current_password, new_password=form.new_password
        )
        accounts.change_password(conn, resources.sessions, user, body)
    except (ValidationError, Invalid, Forbidden) as exc:
        blank = PasswordForm()
        return render(request, "account.html", user, 422, form=blank, errors=field_errors(exc))
    request.session.clear()
    notice = "Password changed; every session ended. Sign in with the new password."
    return render(request, "login.html", next="/cameras", error=None, notice=notice)


@router.post("/account/sign-out-everywhere", summary="End every one of your sessions (form)")
def sign_out_everywhere(
    request: Request,
    user: CurrentUser,
    conn: SessionDep,
    resources: ResourcesDep,
    form: Annotated[CsrfForm, Form()],
) -> Response:
    if user.user_id is not None:
        accounts.revoke_sessions(conn, resources.sessions, user, user.user_id)
    request.session.clear()
    return redirect(request, "/login")


def _users_page(
    request: Request,
    user: Principal,
    conn: SessionDep,
    form: UserForm | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    created_password: str | None = None,
) -> Response:
    return render(
        request,
        "users.html",
        user,
        status_code=status_code,
        users=accounts.list_users(conn, user),
        form=(form or UserForm()).model_copy(update={"password": ""}),
        errors=errors or {},
        clients=tenancy.list_clients(conn, user) if user.is_superadmin else [],
        created_password=created_password,
    )


@router.get("/users", summary="Users page")
def users_page(request: Request, user: AdminUser, conn: SessionDep) -> Response:
    return _users_page(request, user, conn)


@router.post("/users", summary="Create a user (form); a blank password is generated")
def create_user(
    request: Request, user: AdminUser, conn: SessionDep, form: Annotated[UserForm, Form()]
) -> Response:
    password = form.password or accounts.new_password()
    try:
        body = UserIn.model_validate(
            {
                "email": form.email,
                "password": password,
                "role": form.role,
                "client_id": blank_to_none(form.client_id),
            }
        )
        made = accounts.create_user(conn, user, body)
    except (ValidationError, Invalid, Conflict, Forbidden) as exc:
        return _users_page(request, user, conn, form, field_errors(exc), 422)
    shown = None if form.password else password
    request.session["flash"] = f"User {made.email} created."
    return _users_page(request, user, conn, created_password=shown)


@router.post("/users/{user_id}", summary="Change, disable, sign out or delete a user (form)")
def change_user(
    request: Request,
    user: AdminUser,
    conn: SessionDep,
    resources: ResourcesDep,
    user_id: RowId,
    form: Annotated[UserActionForm, Form()],
) -> Response:
    sessions = resources.sessions
    try:
        if form.action == "revoke":
            accounts.revoke_sessions(conn, sessions, user, user_id)
            message = "Signed out everywhere."
        elif form.action == "delete":
            accounts.delete_user(conn, sessions, user, user_id)
            message = "User deleted."
        else:
            change = (
                UserChange.model_validate({"role": form.role})
                if form.action == "role"
                else UserChange(disabled=form.action == "disable")
            )
            accounts.change_user(conn, sessions, user, user_id, change)
            message = "User saved."
    except (ValidationError, Invalid, Conflict) as exc:
        return _users_page(request, user, conn, errors=field_errors(exc), status_code=422)
    return redirect(request, "/users", message)


def _keys_page(
    request: Request,
    user: Principal,
    conn: SessionDep,
    form: KeyForm | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    created: accounts.ApiKeyCreated | None = None,
) -> Response:
    return render(
        request,
        "api_keys.html",
        user,
        status_code=status_code,
        keys=accounts.list_api_keys(conn, user),
        form=form or KeyForm(),
        errors=errors or {},
        clients=tenancy.list_clients(conn, user) if user.is_superadmin else [],
        created=created,
    )


@router.get("/api-keys", summary="API keys page")
def keys_page(request: Request, user: AdminUser, conn: SessionDep) -> Response:
    return _keys_page(request, user, conn)


@router.post("/api-keys", summary="Create an API key (form); its secret is shown once")
def create_key(
    request: Request, user: AdminUser, conn: SessionDep, form: Annotated[KeyForm, Form()]
) -> Response:
    try:
        body = ApiKeyIn.model_validate(
            {"name": form.name, "role": form.role, "client_id": blank_to_none(form.client_id)}
        )
        created = accounts.create_api_key(conn, user, body)
    except (ValidationError, Invalid) as exc:
        return _keys_page(request, user, conn, form, field_errors(exc), 422)
    return _keys_page(request, user, conn, created=created)


@router.post("/api-keys/{key_id}/revoke", summary="Revoke an API key (form)")
def revoke_key(
    request: Request,
    user: AdminUser,
    conn: SessionDep,
    key_id: RowId,
    form: Annotated[CsrfForm, Form()],
) -> Response:
    accounts.revoke_api_key(conn, user, key_id)
    return redirect(request, "/api-keys", f"API key {key_id} revoked.")
