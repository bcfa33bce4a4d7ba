"""Rendering helpers shared by the pages: templates with the caller, CSRF token and
flash messages; the error and sign-in pages; turning a ValidationError into field messages."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from services.dashboard import auth
from services.dashboard.auth import Principal, Role
from services.dashboard.errors import DashboardError, NotAuthenticated
from services.dashboard.resources import Resources


class CsrfForm(BaseModel):
    """A form with nothing but the CSRF token (delete buttons, sign-out)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})

    csrf_token: str = ""


def render(
    request: Request,
    template: str,
    user: Principal | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    resources: Resources = request.app.state.resources
    flash = request.session.pop("flash", None)
    return resources.templates.TemplateResponse(
        request,
        template,
        {
            "user": user,
            "csrf_token": auth.csrf_token(request.session),
            "flash": flash,
            "Role": Role,
            "mlflow_ui": resources.settings.mlflow_ui_url or resources.settings.mlflow.tracking_uri,
            **context,
        },
        status_code=status_code,
    )


def redirect(request: Request, url: str, flash: str | None = None) -> RedirectResponse:
    """303 after a successful POST, with an optional one-time message for the next page."""
    if flash:
        request.session["flash"] = flash
    return RedirectResponse(url, status_code=303)


def safe_next(target: str | None) -> str:
    """Only same-site paths: ``/x`` yes, ``//evil.example`` or ``https://...`` no."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/cameras"


def error_page(request: Request, exc: DashboardError) -> HTMLResponse:
    if isinstance(exc, NotAuthenticated):
        return render(request, "login.html", status_code=401, next=request.url.path, error=None)
    return render(request, "error.html", status_code=exc.status, message=exc.message)


def field_errors(exc: ValidationError | DashboardError) -> dict[str, str]:
    """``{field: message}`` for the form; errors without a field go under ``""``."""
    if isinstance(exc, DashboardError):
        return {exc.field or "": exc.message}
    found: dict[str, str] = {}
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        found.setdefault(name, err["msg"].removeprefix("Value error, "))
    return found


def blank_to_none(value: str) -> str | None:
    """Form fields arrive as strings; an empty one means "not given"."""
    return value.strip() or None
