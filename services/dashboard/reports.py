"""Report rows as the dashboard serves them (stores: :mod:`vidpipe.reports`).

Performance reports are per client (scoped like everything else); accuracy reports and
promotion decisions belong to a client or are shared, and a caller reads shared ones and its
own client's (a superadmin: every one, or one client's and the shared ones).
"""

from __future__ import annotations

import sqlalchemy as sa

from services.dashboard.auth import Principal
from services.dashboard.tenancy import client_filter
from vidpipe import reports
from vidpipe.reports import AccuracyReport, PerformanceReport, Promotion

HOPS = ("decoded", "detected", "rendered")
QUANTILES = ("p50", "p95", "p99")


def performance(
    conn: sa.Connection,
    principal: Principal,
    client_id: str | None = None,
    camera_id: str | None = None,
    limit: int = 500,
) -> list[PerformanceReport]:
    """The caller's newest ``limit`` rows, returned oldest first (ready to chart)."""
    return reports.performance(conn, client_filter(principal, client_id), camera_id, limit)


def accuracy(
    conn: sa.Connection,
    principal: Principal,
    client_id: str | None = None,
    model_name: str | None = None,
    limit: int = 200,
) -> list[AccuracyReport]:
    """Newest first; 404 (NotFound) when ``client_id`` names another client."""
    return reports.accuracy(conn, client_filter(principal, client_id), model_name, limit)


def promotions(
    conn: sa.Connection,
    principal: Principal,
    client_id: str | None = None,
    model_name: str | None = None,
    limit: int = 200,
) -> list[Promotion]:
    """Newest first; 404 (NotFound) when ``client_id`` names another client."""
    return reports.promotions(conn, client_filter(principal, client_id), model_name, limit)
