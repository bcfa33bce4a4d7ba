"""FastAPI dependencies as ``Annotated`` aliases: resources, a DB connection per request, the
authenticated caller with role checks, and the throttle of expensive routes.

Every route except ``/health``, ``/login`` and ``/static`` depends on :data:`CurrentUser`
(directly or through a role alias), so nothing else answers without credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from services.dashboard import auth
from services.dashboard.auth import Principal, Role
from services.dashboard.errors import Forbidden, NotAuthenticated
from services.dashboard.resources import Resources
from vidpipe.db import api_keys, users


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def get_connection(resources: ResourcesDep) -> Iterator[sa.Connection]:
    """One pooled connection per request; writes call ``conn.commit()`` themselves."""
    with resources.engine.connect() as conn:
        yield conn


SessionDep = Annotated[sa.Connection, Depends(get_connection)]


def client_address(request: HTTPConnection) -> str:
    """The caller's address (behind a trusted proxy, the one it forwarded)."""
    return request.client.host if request.client else "unknown"


def _authenticate(request: Request, conn: SessionDep, resources: ResourcesDep) -> Principal:
    return authenticate(request, conn, resources)


def authenticate(request: HTTPConnection, conn: sa.Connection, resources: Resources) -> Principal:
    """The caller of an HTTP request or a websocket: an API key (``Authorization: Bearer``),
    else the session cookie's user.

    Raises:
        NotAuthenticated: neither, or a bad or revoked key, or a disabled user.
        TooManyRequests: the address failed too many key checks lately.
    """
    token = auth.bearer_token(request.headers.get("authorization"))
    if token is not None:
        address = client_address(request)
        resources.throttle.check_api_keys(address)
        row = conn.execute(
            sa.select(api_keys.c.key_id, api_keys.c.client_id, api_keys.c.name, api_keys.c.role)
            .where(api_keys.c.key_hash == auth.hash_api_key(token))
            .where(api_keys.c.revoked_at.is_(None))
        ).one_or_none()
        if row is None:
            resources.throttle.bad_api_key(address)
            raise NotAuthenticated("invalid or revoked API key")
        return Principal(
            name=f"key:{row.name}", role=Role(row.role), client_id=row.client_id, key_id=row.key_id
        )
    session: dict[str, Any] = request.session
    uid = session.get("uid")
    if isinstance(uid, int):
        row = conn.execute(
            sa.select(users.c.email, users.c.client_id, users.c.role, users.c.password_hash).where(
                users.c.user_id == uid, users.c.disabled_at.is_(None)
            )
        ).one_or_none()
        if row is not None and session.get("pw") == auth.password_fingerprint(row.password_hash):
            return Principal(
                name=row.email,
                role=Role(row.role),
                client_id=row.client_id,
                user_id=uid,
                via_session=True,
            )
        session.pop("uid", None)
    raise NotAuthenticated("sign in or send an API key (Authorization: Bearer <key>)")


async def current_principal(
    request: Request, principal: Annotated[Principal, Depends(_authenticate)]
) -> Principal:
    """The caller; cookie-authenticated writes must also carry the session's CSRF token."""
    if principal.via_session and request.method not in auth.SAFE_METHODS:
        sent: object = request.headers.get(auth.CSRF_HEADER)
        if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            sent = (await request.form()).get(auth.CSRF_FIELD)
        if not auth.csrf_matches(request.session, sent):
            raise Forbidden("missing or invalid CSRF token; reload the page and try again")
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: CurrentUser) -> Principal:
        if not principal.role.at_least(role):
            raise Forbidden(f"this needs the {role} role; you are {principal.role}")
        return principal

    return check


OperatorUser = Annotated[Principal, Depends(require(Role.operator))]
AdminUser = Annotated[Principal, Depends(require(Role.admin))]
SuperadminUser = Annotated[Principal, Depends(require(Role.superadmin))]


def expensive(user: CurrentUser, resources: ResourcesDep) -> None:
    """Count a call of a route that lists storage or the registry, or queues work
    (:meth:`services.dashboard.throttle.Throttle.expensive`): 429 over the limit."""
    resources.throttle.expensive(user)


#: ``dependencies=[Expensive]`` on a route throttles it per caller
Expensive = Depends(expensive)
