"""Sign in and out. ``/login`` is public; its form carries the anonymous session's CSRF token.
Every attempt is counted per account and per address before the password is hashed
(:class:`services.dashboard.throttle.Throttle`): over the limit, 429 with ``Retry-After``."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from pydantic import BaseModel, ConfigDict

from services.dashboard import accounts, auth
from services.dashboard.deps import CurrentUser, ResourcesDep, SessionDep, client_address
from services.dashboard.errors import TooManyRequests
from services.dashboard.pages.render import CsrfForm, redirect, render, safe_next

log = logging.getLogger(__name__)
router = APIRouter()


class LoginForm(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "ops@acme.example", "password": "secret"}]},
    )

    email: str = ""
    password: str = ""
    next: str = ""
    csrf_token: str = ""


@router.get("/login", tags=["public"], summary="Sign-in page")
def login_page(request: Request, next: str = "/cameras") -> Response:
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login", tags=["public"], summary="Sign in (form)")
def login(
    request: Request,
    conn: SessionDep,
    resources: ResourcesDep,
    form: Annotated[LoginForm, Form()],
) -> Response:
    target = safe_next(form.next)
    if not auth.csrf_matches(request.session, form.csrf_token):
        error = "Your sign-in form expired. Please try again."
        return render(request, "login.html", status_code=403, next=target, error=error)
    try:
        resources.throttle.sign_in(client_address(request), form.email)
    except TooManyRequests as exc:
        log.warning("sign-in throttled", extra={"email": form.email[:100]})
        error = f"Too many sign-in attempts. Try again in {exc.retry_after_s} s."
        page = render(request, "login.html", status_code=429, next=target, error=error)
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    found = accounts.find_login(conn, form.email, form.password)
    if found is None:
        log.info("failed sign-in", extra={"email": form.email[:100]})
        error = "Wrong e-mail or password."
        return render(request, "login.html", status_code=401, next=target, error=error)
    auth.start_session(request.session, *found)
    return redirect(request, target)


@router.post("/logout", summary="Sign out (form)")
def logout(request: Request, user: CurrentUser, form: Annotated[CsrfForm, Form()]) -> Response:
    request.session.clear()
    return redirect(request, "/login")
