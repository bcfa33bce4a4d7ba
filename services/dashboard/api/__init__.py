"""The JSON API, ``/api/v1``: every route needs a session cookie or an API key."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from services.dashboard.api import accounts, cameras, clients, jobs, models, reports
from services.dashboard.deps import current_principal

api_router = APIRouter(prefix="/api/v1", dependencies=[Depends(current_principal)])
for module in (clients, cameras, models, reports, jobs, accounts):
    api_router.include_router(module.router)
