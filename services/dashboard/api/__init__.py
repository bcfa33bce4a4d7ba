"""The JSON API, ``/api/v1``: every route needs a session cookie or an API key. The
websocket (:data:`socket_router`) authenticates the same way, in its handler."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from services.dashboard.api import (
    accounts,
    agents,
    cameras,
    clients,
    jobs,
    models,
    reports,
    requests,
)
from services.dashboard.api.request_socket import socket_router
from services.dashboard.deps import current_principal

api_router = APIRouter(prefix="/api/v1", dependencies=[Depends(current_principal)])
for module in (clients, cameras, agents, models, reports, jobs, accounts, requests):
    api_router.include_router(module.router)

__all__ = ["api_router", "socket_router"]
