"""Users and API keys of a client. Admins manage their own client's; a superadmin any.

Nobody but a superadmin creates a superadmin; API keys are at most ``operator`` (a key never
manages users or keys). Secrets are stored hashed (see :mod:`services.dashboard.auth`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.dashboard import auth
from services.dashboard.auth import Principal, Role
from services.dashboard.errors import Conflict, Forbidden, Invalid, NotFound
from services.dashboard.tenancy import acting_client, client_filter
from vidpipe.db import api_keys, users
from vidpipe.ids import ID_PATTERN

#: who acts when the CLI creates a user: someone at the server with the database's keys
_OPERATOR_CLI = Principal(name="cli", role=Role.superadmin, client_id=None)
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$"


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
    password: str = Field(min_length=10, max_length=256)
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
        raise Conflict(f"a user with e-mail {body.email} exists", field="email")
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


def delete_user(conn: sa.Connection, principal: Principal, user_id: int) -> None:
    row = conn.execute(sa.select(users).where(users.c.user_id == user_id)).one_or_none()
    visible = row is not None and (
        principal.is_superadmin
        or (row.client_id is not None and row.client_id == principal.client_id)
    )
    if row is None or not visible:
        raise NotFound(f"user {user_id} not found", field="user_id")
    if user_id == principal.user_id:
        raise Conflict("you cannot delete yourself")
    conn.execute(sa.delete(users).where(users.c.user_id == user_id))
    conn.commit()


def find_login(conn: sa.Connection, email: str, password: str) -> tuple[int, str] | None:
    """``(user_id, password_hash)`` when the e-mail and password match, else None."""
    row = conn.execute(
        sa.select(users.c.user_id, users.c.password_hash).where(
            users.c.email == email.strip().lower()
        )
    ).one_or_none()
    if not auth.verify_password(None if row is None else row.password_hash, password):
        return None
    assert row is not None
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
