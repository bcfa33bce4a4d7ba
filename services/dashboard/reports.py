"""Rows of the evaluator's reports (schema: infra/migrations/versions/0002_reports.py).

Performance reports are per client (scoped like everything else); accuracy reports are per
model and dataset, not per client, so every signed-in user may read them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from services.dashboard.auth import Principal
from services.dashboard.db import accuracy_reports, model_promotions, performance_reports
from services.dashboard.tenancy import client_filter
from vidpipe.reports import ReportRow

HOPS = ("decoded", "detected", "rendered")
QUANTILES = ("p50", "p95", "p99")


class PerformanceReport(ReportRow):
    """A ``performance_reports`` row as stored (:class:`vidpipe.reports.ReportRow` plus when
    the evaluator wrote it)."""

    model_config = ConfigDict(extra="ignore")

    generated_at: datetime


class AccuracyReport(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: int
    dataset: str
    model_name: str
    model_version: str
    map: float | None
    map_50: float | None
    map_75: float | None
    per_class_ap: dict[str, Any]
    images: int | None
    mlflow_run_id: str | None
    created_at: datetime


def performance(
    conn: sa.Connection,
    principal: Principal,
    client_id: str | None = None,
    camera_id: str | None = None,
    limit: int = 500,
) -> list[PerformanceReport]:
    """The newest ``limit`` rows, returned oldest first (ready to chart)."""
    t = performance_reports
    query = sa.select(t).order_by(t.c.hour.desc(), t.c.camera_id).limit(limit)
    only = client_filter(principal, client_id)
    if only is not None:
        query = query.where(t.c.client_id == only)
    if camera_id is not None:
        query = query.where(t.c.camera_id == camera_id)
    rows = [PerformanceReport.model_validate(r._mapping) for r in conn.execute(query)]
    return rows[::-1]


def accuracy(
    conn: sa.Connection, model_name: str | None = None, limit: int = 200
) -> list[AccuracyReport]:
    t = accuracy_reports
    query = sa.select(t).order_by(t.c.created_at.desc()).limit(limit)
    if model_name is not None:
        query = query.where(t.c.model_name == model_name)
    return [AccuracyReport.model_validate(r._mapping) for r in conn.execute(query)]


class Promotion(BaseModel):
    """One decision of the promotion gate (``vidpipe models promote``)."""

    id: int
    model_name: str
    candidate_version: str
    production_version: str | None
    dataset: str
    candidate_map: float | None
    production_map: float | None
    decision: str
    requested_by: str | None
    created_at: datetime


def promotions(
    conn: sa.Connection, model_name: str | None = None, limit: int = 200
) -> list[Promotion]:
    """Newest first. Models are shared across clients, like accuracy reports."""
    t = model_promotions
    query = sa.select(t).order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit)
    if model_name is not None:
        query = query.where(t.c.model_name == model_name)
    return [Promotion.model_validate(r._mapping) for r in conn.execute(query)]
