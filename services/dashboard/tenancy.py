"""Which client a request acts on, and the clients themselves.

Rule: a caller bound to a client acts only on that client; naming another one gets the same
404 as a client that does not exist, so other tenants' names do not leak. A superadmin acts
on any existing client and must name it where a write needs one.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.dashboard.auth import Principal
from services.dashboard.errors import Conflict, Invalid, NotFound
from vidpipe.db import clients
from vidpipe.ids import ID_PATTERN, ID_RULE
from vidpipe.retention import effective_days
from vidpipe.settings import RetentionSettings


class ClientIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"client_id": "acme", "name": "Acme"}]}
    )

    client_id: str = Field(pattern=ID_PATTERN, description=ID_RULE)
    name: str = Field(min_length=1, max_length=100)


#: The longest retention a client can be given, in days (100 years).
MAX_RETENTION_DAYS = 36_500


class ClientChange(BaseModel):
    """What a superadmin may change on a client: its retention (null: the platform default)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"retention_days": 90}]}
    )

    retention_days: int | None = Field(
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="days its frames, annotations, renders, clips, requests and frame metrics"
        " are kept; null: the platform default",
    )


class ClientOut(BaseModel):
    client_id: str
    name: str
    created_at: datetime
    retention_days: int | None = Field(
        default=None, description="the client's own retention in days; null: platform default"
    )
    effective_retention_days: int | None = Field(
        default=None, description="days its data is actually kept (own or platform default)"
    )

    def with_default(self, settings: RetentionSettings) -> ClientOut:
        """This client with ``effective_retention_days`` filled from the platform default."""
        days = effective_days(self.retention_days, settings)
        return self.model_copy(update={"effective_retention_days": days})


def _missing(client_id: str) -> NotFound:
    return NotFound(f"client {client_id!r} not found", field="client_id")


def acting_client(conn: sa.Connection, principal: Principal, requested: str | None) -> str:
    """The client a write or a single-client read acts on (see module rule)."""
    if not principal.is_superadmin:
        if requested is not None and requested != principal.client_id:
            raise _missing(requested)
        assert principal.client_id is not None
        return principal.client_id
    if requested is None:
        raise Invalid("client_id is required for a superadmin", field="client_id")
    get_client(conn, principal, requested)
    return requested


def client_filter(principal: Principal, requested: str | None) -> str | None:
    """For lists: the one client to show, or None for all (superadmin without a filter)."""
    if principal.is_superadmin:
        return requested
    if requested is not None and requested != principal.client_id:
        raise _missing(requested)
    return principal.client_id


def list_clients(conn: sa.Connection, principal: Principal) -> list[ClientOut]:
    query = sa.select(clients).order_by(clients.c.client_id)
    if not principal.is_superadmin:
        query = query.where(clients.c.client_id == principal.client_id)
    return [ClientOut.model_validate(r._mapping) for r in conn.execute(query)]


def get_client(conn: sa.Connection, principal: Principal, client_id: str) -> ClientOut:
    if not principal.sees(client_id):
        raise _missing(client_id)
    row = conn.execute(sa.select(clients).where(clients.c.client_id == client_id)).one_or_none()
    if row is None:
        raise _missing(client_id)
    return ClientOut.model_validate(row._mapping)


def set_retention(conn: sa.Connection, client_id: str, body: ClientChange) -> ClientOut:
    """Superadmin only (checked by the route): set the client's retention; NotFound when
    the client does not exist. The janitor applies it on its next run."""
    row = conn.execute(
        sa.update(clients)
        .where(clients.c.client_id == client_id)
        .values(retention_days=body.retention_days)
        .returning(clients)
    ).one_or_none()
    if row is None:
        raise _missing(client_id)
    conn.commit()
    return ClientOut.model_validate(row._mapping)


def create_client(conn: sa.Connection, body: ClientIn) -> ClientOut:
    """Superadmin only (checked by the route). Raises Conflict when the id is taken."""
    row = conn.execute(
        pg_insert(clients)
        .values(client_id=body.client_id, name=body.name)
        .on_conflict_do_nothing(index_elements=["client_id"])
        .returning(clients)
    ).one_or_none()
    if row is None:
        raise Conflict(f"client {body.client_id!r} already exists", field="client_id")
    conn.commit()
    return ClientOut.model_validate(row._mapping)
