"""Performance reports (per client), accuracy reports and promotions (per client or shared)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.dashboard import reports
from services.dashboard.deps import CurrentUser, SessionDep
from vidpipe.ids import ID_PATTERN
from vidpipe.modelref import MODEL_NAME_PATTERN
from vidpipe.reports import AccuracyReport, PerformanceReport, Promotion

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/performance", summary="Hourly fps, latency percentiles per hop, detections")
def performance(
    user: CurrentUser,
    conn: SessionDep,
    client_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    camera_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[PerformanceReport]:
    return reports.performance(conn, user, client_id, camera_id, limit)


@router.get(
    "/accuracy",
    summary="mAP of model versions on evaluation datasets (shared and your client's)",
)
def accuracy(
    user: CurrentUser,
    conn: SessionDep,
    client_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    model_name: Annotated[str | None, Query(pattern=MODEL_NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AccuracyReport]:
    return reports.accuracy(conn, user, client_id, model_name, limit)


@router.get(
    "/promotions",
    summary="Promotion gate decisions: candidate vs production mAP (shared and your client's)",
)
def promotions(
    user: CurrentUser,
    conn: SessionDep,
    client_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    model_name: Annotated[str | None, Query(pattern=MODEL_NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Promotion]:
    return reports.promotions(conn, user, client_id, model_name, limit)
