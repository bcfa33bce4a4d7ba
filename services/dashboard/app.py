"""The dashboard app: ``create_app(settings)`` wires resources, middleware, error handling,
the JSON API (``/api/v1``), the pages and static files. Nothing is built at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from services.dashboard import errors_http
from services.dashboard.api import api_router, socket_router
from services.dashboard.deps import CurrentUser
from services.dashboard.pages import page_router
from services.dashboard.resources import STATIC_DIR, Resources
from services.dashboard.sessions import ServerSessionMiddleware
from services.dashboard.settings import DashboardSettings

log = logging.getLogger(__name__)

SESSION_COOKIE = "vidpipe_session"


def create_app(settings: DashboardSettings) -> FastAPI:
    resources = Resources.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        resources.close()

    app = FastAPI(
        title="vidpipe dashboard",
        version="1",
        description="Clients, cameras, model choice, results, reports and training jobs.",
        docs_url=None,  # the schema itself needs auth: see /api/v1/openapi.json
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,  # 413 beyond, streamed bodies included
    )
    app.state.resources = resources
    _add_middleware(app, settings, resources)
    errors_http.install(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(api_router)
    app.include_router(socket_router)
    app.include_router(page_router)

    @app.get("/health", tags=["public"], summary="Liveness")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    def openapi(user: CurrentUser) -> dict[str, Any]:
        return app.openapi()

    return app


def _add_middleware(app: FastAPI, settings: DashboardSettings, resources: Resources) -> None:
    s3 = urlsplit(settings.s3_public_endpoint_url or settings.s3.endpoint_url)
    s3_origin = f"{s3.scheme}://{s3.netloc}"
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data: {s3_origin}; media-src 'self' {s3_origin}; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/static/"):  # pages may show one-time secrets
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    secure = settings.cookies_secure
    log.info(
        "session cookies %s (%s)",
        "Secure" if secure else "not Secure",
        "VIDPIPE_SECURE_COOKIES"
        if settings.secure_cookies is not None
        else f"default for host {settings.host}",
    )
    app.add_middleware(
        ServerSessionMiddleware,
        store=resources.sessions,
        cookie=SESSION_COOKIE,
        secure=secure,
    )
