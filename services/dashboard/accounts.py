"""Users and API keys of a client. Admins manage their own client's; a superadmin any.

Nobody but a superadmin creates a superadmin; API keys are at most ``operator`` (a key never
manages users or keys). Secrets are stored hashed (see :mod:`services.dashboard.auth`).
A taken e-mail answers the same 409, without echoing it, whichever client holds it. Disabling
a user, changing a password, "sign out everywhere" and an admin's revocation end the user's
sessions (:class:`services.dashboard.sessions.SessionStore`).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.dashboard import auth
from services.dashboard.auth import Principal, Role
from services.dashboard.errors import Conflict, Forbidden, Invalid, NotFound
from services.dashboard.sessions import SessionStore
from services.dashboard.tenancy import acting_client, client_filter
from vidpipe.db import api_keys, users
from vidpipe.ids import ID_PATTERN

#: who acts when the CLI creates a user: someone at the server with the database's keys
_OPERATOR_CLI = Principal(name="cli", role=Role.superadmin, client_id=None)
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$"
#: the one answer to a taken e-mail, whoever holds it (no echo, no client)
EMAIL_TAKEN = "that e-mail address cannot be used for a new account; choose another"
Password = Annotated[str, Field(min_length=10, max_length=256)]


class UserIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"email": "ops@acme.example", "password": "a long passphrase", "role": "operator"}
            ]
        },
    )

    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)
    password: Password
    role: Role
    client_id: str | None = Field(default=None, pattern=ID_PATTERN, description="superadmin only")

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


class UserOut(BaseModel):
    user_id: int
    email: str
    client_id: str | None
    role: Role
    created_at: datetime
    disabled_at: datetime | None = None


class UserChange(BaseModel):
    """A new role and/or enabled state; disabling ends the user's sessions."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"role": "viewer", "disabled": True}]}
    )

    role: Literal["viewer", "operator", "admin"] | None = None
    disabled: bool | None = None


class PasswordChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"current_password": "the old passphrase", "new_password": "a new long passphrase"}
            ]
        },
    )

    current_password: str = Field(max_length=256)
    new_password: Password


def new_password() -> str:
    """A random initial password (shown once to the admin who creates the user)."""
    return secrets.token_urlsafe(12)


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "ci uploader", "role": "operator"}]},
    )

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    role: Literal["viewer", "operator"] = "operator"
    client_id: str | None = Field(default=None, pattern=ID_PATTERN, description="superadmin only")


class ApiKeyOut(BaseModel):
    key_id: int
    client_id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the secret; shown only now, send as Authorization: Bearer")


def create_user(conn: sa.Connection, principal: Principal | None, body: UserIn) -> UserOut:
    """``principal`` None: the operator's CLI (trusted). Raises Conflict for a taken e-mail."""
    if body.role is Role.superadmin:
        if principal is not None and not principal.is_superadmin:
            raise Forbidden("only a superadmin can create a superadmin")
        if body.client_id is not None:
            raise Invalid("a superadmin belongs to no client; omit client_id", field="client_id")
        client = None
    elif principal is None and body.client_id is None:
        raise Invalid("client_id is required for this role", field="client_id")
    else:
        client = acting_client(conn, principal or _OPERATOR_CLI, body.client_id)
    row = conn.execute(
        pg_insert(users)
        .values(
            email=body.email,
            password_hash=auth.hash_password(body.password),
            client_id=client,
            role=body.role.value,
        )
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(users)
    ).one_or_none()
    if row is None:
        raise Conflict(EMAIL_TAKEN, field="email")
    conn.commit()
    return UserOut.model_validate(row._mapping)


def list_users(
    conn: sa.Connection, principal: Principal, client_id: str | None = None
) -> list[UserOut]:
    query = sa.select(users).order_by(users.c.client_id, users.c.email)
    only = client_filter(principal, client_id)
    if only is not None:
        query = query.where(users.c.client_id == only)
    return [UserOut.model_validate(r._mapping) for r in conn.execute(query)]


def _managed_user(conn: sa.Connection, principal: Principal, user_id: int) -> sa.Row[Any]:
    """A user ``principal`` may manage. Raises NotFound for anyone else (and oneself is
    refused by each caller where it matters)."""
    row = conn.execute(sa.select(users).where(users.c.user_id == user_id)).one_or_none()
    visible = row is not None and (
        principal.is_superadmin
        or (row.client_id is not None and row.client_id == principal.client_id)
    )
    if row is None or not visible:
        raise NotFound(f"user {user_id} not found", field="user_id")
    return row


def delete_user(
    conn: sa.Connection, sessions: SessionStore, principal: Principal, user_id: int
) -> None:
    _managed_user(conn, principal, user_id)
    if user_id == principal.user_id:
        raise Conflict("you cannot delete yourself")
    conn.execute(sa.delete(users).where(users.c.user_id == user_id))
    conn.commit()
    sessions.revoke_user(user_id)


def change_user(
    conn: sa.Connection,
    sessions: SessionStore,
    principal: Principal,
    user_id: int,
    body: UserChange,
) -> UserOut:
    """Set a user's role and/or disable or enable them (not oneself, not a superadmin's
    role). Disabling ends every session of the user."""
    row = _managed_user(conn, principal, user_id)
    if user_id == principal.user_id:
        raise Conflict("you cannot change your own role or disable yourself")
    values: dict[str, Any] = {}
    if body.role is not None:
        if row.role == Role.superadmin.value:
            raise Invalid("a superadmin's role does not change", field="role")
        values["role"] = body.role
    if body.disabled is not None:
        values["disabled_at"] = sa.func.now() if body.disabled else None
    if values:
        row = conn.execute(
            sa.update(users).where(users.c.user_id == user_id).values(**values).returning(users)
        ).one()
        conn.commit()
    if body.disabled:
        sessions.revoke_user(user_id)
    return UserOut.model_validate(row._mapping)


def revoke_sessions(
    conn: sa.Connection, sessions: SessionStore, principal: Principal, user_id: int
) -> int:
    """End every session of a user ``principal`` manages (or of ``principal`` itself)."""
    if user_id != principal.user_id:
        _managed_user(conn, principal, user_id)
    return sessions.revoke_user(user_id)


def change_password(
    conn: sa.Connection, sessions: SessionStore, principal: Principal, body: PasswordChange
) -> str:
    """Set the signed-in user's password after checking the current one, and end all of the
    user's sessions. Returns the new hash (for the caller's fresh session).

    Raises:
        Forbidden: an API key (it has no password).
        Invalid: the current password is wrong (field ``current_password``).
    """
    if principal.user_id is None:
        raise Forbidden("API keys have no password; sign in as a user")
    row = conn.execute(
        sa.select(users.c.password_hash).where(users.c.user_id == principal.user_id)
    ).one()
    if not auth.verify_password(row.password_hash, body.current_password):
        raise Invalid("the current password is wrong", field="current_password")
    password_hash = auth.hash_password(body.new_password)
    conn.execute(
        sa.update(users)
        .where(users.c.user_id == principal.user_id)
        .values(password_hash=password_hash)
    )
    conn.commit()
    sessions.revoke_user(principal.user_id)
    return password_hash


def find_login(conn: sa.Connection, email: str, password: str) -> tuple[int, str] | None:
    """``(user_id, password_hash)`` when the e-mail and password match an enabled user, else
    None (a disabled user costs the same hash as anyone)."""
    row = conn.execute(
        sa.select(users.c.user_id, users.c.password_hash, users.c.disabled_at).where(
            users.c.email == email.strip().lower()
        )
    ).one_or_none()
    if not auth.verify_password(None if row is None else row.password_hash, password):
        return None
    assert row is not None
    if row.disabled_at is not None:
        return None
    return row.user_id, row.password_hash


def create_api_key(conn: sa.Connection, principal: Principal, body: ApiKeyIn) -> ApiKeyCreated:
    client = acting_client(conn, principal, body.client_id)
    key = auth.new_api_key()
    row = conn.execute(
        sa.insert(api_keys)
        .values(client_id=client, name=body.name, role=body.role, key_hash=auth.hash_api_key(key))
        .returning(*_KEY_COLUMNS)
    ).one()
    conn.commit()
    return ApiKeyCreated(**row._mapping, key=key)


def list_api_keys(
    conn: sa.Connection, principal: Principal, client_id: str | None = None
) -> list[ApiKeyOut]:
    query = sa.select(*_KEY_COLUMNS).order_by(api_keys.c.key_id)
    only = client_filter(principal, client_id)
    if only is not None:
        query = query.where(api_keys.c.client_id == only)
    return [ApiKeyOut.model_validate(r._mapping) for r in conn.execute(query)]


def revoke_api_key(conn: sa.Connection, principal: Principal, key_id: int) -> None:
    row = conn.execute(
        sa.select(api_keys.c.client_id).where(api_keys.c.key_id == key_id)
    ).one_or_none()
    if row is None or not principal.sees(row.client_id):
        raise NotFound(f"API key {key_id} not found", field="key_id")
    conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
    )
    conn.commit()


_KEY_COLUMNS = (
    api_keys.c.key_id,
    api_keys.c.client_id,
    api_keys.c.name,
    api_keys.c.role,
    api_keys.c.created_at,
    api_keys.c.revoked_at,
)
