"""Who am I, my password and sessions; users and API keys of a client (admins: their own
client's)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel

from services.dashboard import accounts
from services.dashboard.accounts import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    PasswordChange,
    UserChange,
    UserIn,
    UserOut,
)
from services.dashboard.auth import Role
from services.dashboard.deps import AdminUser, CurrentUser, ResourcesDep, SessionDep
from vidpipe.ids import ID_PATTERN

router = APIRouter(tags=["accounts"])
ClientFilter = Annotated[str | None, Query(pattern=ID_PATTERN)]
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class Me(BaseModel):
    name: str
    role: Role
    client_id: str | None
    kind: str


@router.get("/me", summary="The caller")
def me(user: CurrentUser) -> Me:
    kind = "user" if user.user_id is not None else "api_key"
    return Me(name=user.name, role=user.role, client_id=user.client_id, kind=kind)


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change your password; every one of your sessions ends (sign in again)",
)
def change_password(
    request: Request,
    user: CurrentUser,
    conn: SessionDep,
    resources: ResourcesDep,
    body: PasswordChange,
) -> Response:
    accounts.change_password(conn, resources.sessions, user, body)
    request.session.clear()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/me/sessions/revoke",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out everywhere: end every one of your sessions, this one included",
)
def sign_out_everywhere(
    request: Request, user: CurrentUser, conn: SessionDep, resources: ResourcesDep
) -> Response:
    if user.user_id is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)  # an API key has no sessions
    accounts.revoke_sessions(conn, resources.sessions, user, user.user_id)
    request.session.clear()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users")
def list_users(user: AdminUser, conn: SessionDep, client_id: ClientFilter = None) -> list[UserOut]:
    return accounts.list_users(conn, user, client_id)


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(user: AdminUser, conn: SessionDep, body: UserIn) -> UserOut:
    return accounts.create_user(conn, user, body)


@router.patch("/users/{user_id}", summary="Change a user's role, or disable / enable them")
def change_user(
    user: AdminUser,
    conn: SessionDep,
    resources: ResourcesDep,
    user_id: RowId,
    body: UserChange,
) -> UserOut:
    return accounts.change_user(conn, resources.sessions, user, user_id, body)


@router.post(
    "/users/{user_id}/sessions/revoke",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End every session of a user",
)
def revoke_user_sessions(
    user: AdminUser, conn: SessionDep, resources: ResourcesDep, user_id: RowId
) -> Response:
    accounts.revoke_sessions(conn, resources.sessions, user, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(
    user: AdminUser, conn: SessionDep, resources: ResourcesDep, user_id: RowId
) -> Response:
    accounts.delete_user(conn, resources.sessions, user, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/api-keys")
def list_api_keys(
    user: AdminUser, conn: SessionDep, client_id: ClientFilter = None
) -> list[ApiKeyOut]:
    return accounts.list_api_keys(conn, user, client_id)


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key; the secret is in this response only",
)
def create_api_key(user: AdminUser, conn: SessionDep, body: ApiKeyIn) -> ApiKeyCreated:
    return accounts.create_api_key(conn, user, body)


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke")
def revoke_api_key(user: AdminUser, conn: SessionDep, key_id: RowId) -> Response:
    accounts.revoke_api_key(conn, user, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
