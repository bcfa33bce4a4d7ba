"""Errors the dashboard's domain code raises; the app turns them into 4xx responses
(JSON for ``/api``, a rendered page for HTML routes). Messages are safe to show users."""

from __future__ import annotations


class DashboardError(Exception):
    """Base: ``status`` is the HTTP status, ``field`` the request field at fault (if any)."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotAuthenticated(DashboardError):
    status = 401


class Forbidden(DashboardError):
    status = 403


class NotFound(DashboardError):
    """Also used for other clients' objects, so their existence does not leak."""

    status = 404


class Conflict(DashboardError):
    status = 409


class TimedOut(DashboardError):
    """What was asked for did not happen in time (a request's result)."""

    status = 408


class TooLarge(DashboardError):
    """More bytes than a limit allows."""

    status = 413


class Invalid(DashboardError):
    status = 422


class Unavailable(DashboardError):
    """A backing service (MLflow, S3) did not answer."""

    status = 503


class TooManyRequests(DashboardError):
    """A rate limit or quota: ``retry_after_s`` says when to try again (``Retry-After``)."""

    status = 429

    def __init__(self, message: str, retry_after_s: int = 60, field: str | None = None) -> None:
        super().__init__(message, field)
        self.retry_after_s = retry_after_s
