"""Reports page: charts of hourly performance per camera (Chart.js, data embedded as JSON)
and the accuracy table."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from services.dashboard import cameras, reports
from services.dashboard.deps import CurrentUser, SessionDep
from services.dashboard.pages.render import render
from services.dashboard.reports import HOPS, QUANTILES, PerformanceReport
from vidpipe.ids import ID_PATTERN

router = APIRouter()


def chart_data(rows: list[PerformanceReport]) -> dict[str, Any]:
    """Series for the charts: x = hour (and model version when it changes)."""
    labels = sorted({label for r in rows for label in r.detections_by_label})
    return {
        "x": [
            f"{r.hour:%m-%d %H:00} v{r.model_version}"
            if r.model_version
            else f"{r.hour:%m-%d %H:00}"
            for r in rows
        ],
        "fps": [r.effective_fps for r in rows],
        "latency": {
            hop: {q: [getattr(r, f"{hop}_{q}_ms") for r in rows] for q in QUANTILES} for hop in HOPS
        },
        "detections": {
            label: [r.detections_by_label.get(label, 0) for r in rows] for label in labels
        },
    }


@router.get("/reports", summary="Reports page")
def reports_page(
    request: Request,
    user: CurrentUser,
    conn: SessionDep,
    camera_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> Response:
    visible = cameras.list_cameras(conn, user)
    if camera_id is None:
        with_reports = {r.camera_id for r in reports.performance(conn, user, limit=1000)}
        camera_id = next((c.camera_id for c in visible if c.camera_id in with_reports), None)
    rows = []
    if camera_id is not None:
        camera = cameras.get_camera(conn, user, camera_id)
        rows = reports.performance(conn, user, camera.client_id, camera_id, limit=24 * 14)
    return render(
        request,
        "reports.html",
        user,
        cameras=visible,
        camera_id=camera_id,
        rows=rows,
        charts=chart_data(rows),
        accuracy=reports.accuracy(conn, user, limit=50),
        promotions=reports.promotions(conn, user, limit=50),
    )
