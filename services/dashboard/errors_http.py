"""Errors to responses: 4xx with a message for anything a caller can cause; never a 5xx for
bad input. ``/api`` gets JSON (``{"detail": msg, "field": name}``); pages get HTML (the
sign-in form for 401)."""

from __future__ import annotations

import logging

import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from services.dashboard.errors import (
    Conflict,
    DashboardError,
    Invalid,
    NotAuthenticated,
    NotFound,
    TooManyRequests,
    Unavailable,
)
from services.dashboard.pages.render import error_page
from vidpipe.cameras import AmbiguousCamera, CameraExists, CameraNotFound
from vidpipe.jobs import JobFinished, JobNotFound, JobQuotaExceeded, JobRejected
from vidpipe_ml.catalog import ModelNotFound, RegistryUnavailable

log = logging.getLogger(__name__)


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "text/html" not in request.headers.get(
        "accept", ""
    )


async def dashboard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DashboardError)
    headers: dict[str, str] = {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after_s)
    if not wants_json(request):
        page = error_page(request, exc)
        page.headers.update(headers)
        return page
    if isinstance(exc, NotAuthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    body: dict[str, object] = {"detail": exc.message}
    if exc.field:
        body["field"] = exc.field
    return JSONResponse(body, status_code=exc.status, headers=headers)


def _database_error(exc: Exception) -> DashboardError:
    """Integrity/data errors the validation did not catch (a race, a NUL byte): 409/422."""
    orig = getattr(exc, "orig", exc)
    log.info("database refused a write: %s", orig)
    if isinstance(orig, psycopg.errors.UniqueViolation):
        return Conflict("that already exists")
    if isinstance(orig, psycopg.errors.ForeignKeyViolation):
        return Invalid("a referenced object does not exist (it may have just been deleted)")
    return Invalid("a value was refused by the database (out of range or not allowed)")


async def database_error(request: Request, exc: Exception) -> Response:
    return await dashboard_error(request, _database_error(exc))


def _library_error(exc: Exception) -> DashboardError:
    """The libraries' domain errors as responses (their messages are written for users)."""
    message = str(exc)
    if isinstance(exc, CameraExists):
        return Conflict(message, field="camera_id")
    if isinstance(exc, CameraNotFound):
        return NotFound(message, field="camera_id")
    if isinstance(exc, AmbiguousCamera):
        return Invalid(message, field="camera_id")
    if isinstance(exc, JobNotFound):
        return NotFound(message, field="job_id")
    if isinstance(exc, JobFinished):
        return Conflict(message)
    if isinstance(exc, JobRejected):
        return Invalid(message, field=exc.field)
    if isinstance(exc, JobQuotaExceeded):
        return TooManyRequests(message, retry_after_s=60)
    if isinstance(exc, ModelNotFound):
        return NotFound(message, field="model_name")
    assert isinstance(exc, RegistryUnavailable)
    return Unavailable(message)


async def library_error(request: Request, exc: Exception) -> Response:
    return await dashboard_error(request, _library_error(exc))


def install(app: FastAPI) -> None:
    app.add_exception_handler(DashboardError, dashboard_error)
    for library in (
        AmbiguousCamera,
        CameraExists,
        CameraNotFound,
        JobNotFound,
        JobFinished,
        JobRejected,
        JobQuotaExceeded,
        ModelNotFound,
        RegistryUnavailable,
    ):
        app.add_exception_handler(library, library_error)
    for error in (
        sqlalchemy.exc.IntegrityError,
        sqlalchemy.exc.DataError,
        psycopg.IntegrityError,
        psycopg.DataError,
    ):
        app.add_exception_handler(error, database_error)
