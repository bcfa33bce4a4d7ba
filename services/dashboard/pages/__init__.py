"""Server-rendered pages (Jinja2 + a little JavaScript). Forms POST with a CSRF token and
redirect (303) on success; on bad input the form is shown again with messages."""

from __future__ import annotations

from fastapi import APIRouter

from services.dashboard.pages import (
    accounts,
    agents,
    cameras,
    clients,
    config,
    jobs,
    login,
    reports,
    requests,
)

page_router = APIRouter(tags=["pages"])
for module in (login, cameras, agents, config, reports, jobs, accounts, clients, requests):
    page_router.include_router(module.router)
