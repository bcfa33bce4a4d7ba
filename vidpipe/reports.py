"""Report records in Postgres, one store each, built on the tables of :mod:`vidpipe.db`:

- ``performance_reports``: hourly rows per (client, camera, model version, UTC hour),
  written by the Spark report job (:func:`replace_report_cells`), read by the dashboard;
- ``accuracy_reports``: COCO mAP of a model version on a labelled dataset;
- ``model_promotions``: every decision of the promotion gate.

Accuracy reports and promotions belong to a client, or are shared (``client_id`` =
:data:`vidpipe.db.SHARED`), by :func:`record_owner`; a client reads shared records and its own
(``visible_to``), a platform administrator every record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from vidpipe.db import (
    LATENCY_COLUMNS,
    SHARED,
    accuracy_reports,
    model_promotions,
    performance_reports,
)

#: Serializes report swaps (pg_advisory_xact_lock key).
_REPORT_LOCK = 0x76_69_64_70_72_65_70  # "vidprep"
#: Columns the report job writes besides ``hour`` and ``detections_by_label``.
REPORT_COLUMNS: tuple[str, ...] = (
    "client_id",
    "camera_id",
    "model_name",
    "model_version",
    "frames",
    "dropped",
    "effective_fps",
    *LATENCY_COLUMNS,
    "mean_score",
)


class ReportRow(BaseModel):
    """One (client, camera, model version, UTC hour) of ``performance_reports``.

    ``hour`` is the UTC hour's start; ``effective_fps`` frames/s over the frames' capture span;
    ``*_p50_ms``/``_p95_ms``/``_p99_ms`` capture → decoded / detections published / rendered
    latency percentiles in ms; ``detections_by_label`` label → count.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    client_id: str
    camera_id: str
    model_name: str
    model_version: str
    hour: datetime
    frames: int
    dropped: int
    effective_fps: float | None
    decoded_p50_ms: float | None
    decoded_p95_ms: float | None
    decoded_p99_ms: float | None
    detected_p50_ms: float | None
    detected_p95_ms: float | None
    detected_p99_ms: float | None
    rendered_p50_ms: float | None
    rendered_p95_ms: float | None
    rendered_p99_ms: float | None
    mean_score: float | None
    detections_by_label: dict[str, int]


class PerformanceReport(ReportRow):
    """A ``performance_reports`` row as stored: :class:`ReportRow` plus when it was written."""

    model_config = ConfigDict(extra="ignore")

    generated_at: datetime


def replace_report_cells(
    conn: sa.Connection, staging: str, start: datetime, end: datetime
) -> tuple[int, int]:
    """Replace the rows of every (client, camera, hour) cell present in table ``staging``
    (columns :data:`REPORT_COLUMNS`, ``hour_s`` epoch seconds, ``detections_by_label`` JSON
    text) within ``[start, end)`` by the staging rows. Run inside one transaction; an
    advisory lock keeps concurrent report runs from interleaving. Returns (deleted, inserted).
    """
    t = performance_reports
    stage = sa.table(
        staging,
        *(sa.column(c) for c in REPORT_COLUMNS),
        sa.column("hour_s"),
        sa.column("detections_by_label"),
    )
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_REPORT_LOCK)))
    cells = sa.select(stage.c.client_id, stage.c.camera_id, stage.c.hour_s).distinct().subquery()
    deleted = conn.execute(
        sa.delete(t).where(
            t.c.hour >= start,
            t.c.hour < end,
            t.c.client_id == cells.c.client_id,
            t.c.camera_id == cells.c.camera_id,
            t.c.hour == sa.func.to_timestamp(cells.c.hour_s),
        )
    ).rowcount
    inserted = conn.execute(
        sa.insert(t).from_select(
            [*REPORT_COLUMNS, "hour", "detections_by_label"],
            sa.select(
                *(stage.c[c] for c in REPORT_COLUMNS),
                sa.func.to_timestamp(stage.c.hour_s),
                sa.cast(stage.c.detections_by_label, t.c.detections_by_label.type),
            ),
        )
    ).rowcount
    return deleted, inserted


def drop_staging(conn: sa.Connection, staging: str) -> None:
    """Drop the report job's staging table if it exists."""
    sa.Table(staging, sa.MetaData()).drop(conn, checkfirst=True)


def performance(
    conn: sa.Connection,
    client_id: str | None = None,
    camera_id: str | None = None,
    limit: int = 500,
) -> list[PerformanceReport]:
    """The newest ``limit`` rows (optionally one client's / camera's), oldest first."""
    t = performance_reports
    query = sa.select(t).order_by(t.c.hour.desc(), t.c.camera_id).limit(limit)
    if client_id is not None:
        query = query.where(t.c.client_id == client_id)
    if camera_id is not None:
        query = query.where(t.c.camera_id == camera_id)
    rows = [PerformanceReport.model_validate(r._mapping) for r in conn.execute(query)]
    return rows[::-1]


def record_owner(model_shared: bool, model_owner: str | None, dataset_owner: str | None) -> str:
    """Who owns a record about a model evaluated on a dataset: the client owning either
    (``client/name`` datasets, models tagged with an owner), else :data:`SHARED`.

    Raises:
        ValueError: the model and the dataset belong to different clients, or the model
            has no owner at all (registered before owners were recorded: give it one with
            ``vidpipe models set-owner``).
    """
    if not model_shared and model_owner is None:
        raise ValueError(
            "the model has no owner recorded; run `vidpipe models set-owner` for it first"
        )
    owners = {o for o in (model_owner, dataset_owner) if o is not None}
    if len(owners) > 1:
        raise ValueError("the model and the dataset belong to different clients")
    return owners.pop() if owners else SHARED


def _visible(table: sa.Table, client_id: str | None) -> sa.ColumnElement[bool]:
    """Rows ``client_id`` may read (shared and its own); ``None``: every row."""
    if client_id is None:
        return sa.true()
    return table.c.client_id.in_((client_id, SHARED))


class AccuracyRecord(BaseModel):
    """One accuracy evaluation: COCO mAP@[.5:.95] (``map``), @.5, @.75 in 0..1 and per-class
    AP@[.5:.95] of a model version on a dataset; ``client_id``: its owner (or ``shared``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    client_id: str = SHARED
    dataset: str
    model_name: str
    model_version: str
    map: float
    map_50: float
    map_75: float
    per_class_ap: dict[str, float]
    images: int
    mlflow_run_id: str | None


class AccuracyReport(BaseModel):
    """An ``accuracy_reports`` row as stored."""

    model_config = ConfigDict(protected_namespaces=())

    id: int
    client_id: str | None
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


def insert_accuracy(conn: sa.Connection, record: AccuracyRecord) -> int:
    """Store one evaluation; returns the row id."""
    return int(
        conn.execute(
            sa.insert(accuracy_reports)
            .values(**record.model_dump())
            .returning(accuracy_reports.c.id)
        ).scalar_one()
    )


def accuracy(
    conn: sa.Connection,
    visible_to: str | None,
    model_name: str | None = None,
    limit: int = 200,
) -> list[AccuracyReport]:
    """Newest first, those ``visible_to`` may read (``None``: all), optionally one model's."""
    t = accuracy_reports
    query = (
        sa.select(t)
        .where(_visible(t, visible_to))
        .order_by(t.c.created_at.desc(), t.c.id.desc())
        .limit(limit)
    )
    if model_name is not None:
        query = query.where(t.c.model_name == model_name)
    return [AccuracyReport.model_validate(r._mapping) for r in conn.execute(query)]


Decision = Literal["promoted", "refused", "forced"]


class Promotion(BaseModel):
    """One decision of the promotion gate (``vidpipe models promote``); mAP in 0..1."""

    model_config = ConfigDict(protected_namespaces=())

    id: int
    client_id: str | None
    model_name: str
    candidate_version: str
    production_version: str | None
    dataset: str
    candidate_map: float | None
    production_map: float | None
    decision: Decision
    requested_by: str | None
    created_at: datetime

    @property
    def moved(self) -> bool:
        """Whether the alias was moved (promoted or forced)."""
        return self.decision != "refused"


def insert_promotion(
    conn: sa.Connection,
    *,
    client_id: str,
    model_name: str,
    candidate_version: str,
    production_version: str | None,
    dataset: str,
    candidate_map: float,
    production_map: float | None,
    decision: Decision,
    requested_by: str | None,
) -> Promotion:
    """Record one gate decision (``client_id``: its owner, see :func:`record_owner`);
    returns the stored row."""
    row = conn.execute(
        sa.insert(model_promotions)
        .values(
            client_id=client_id,
            model_name=model_name,
            candidate_version=candidate_version,
            production_version=production_version,
            dataset=dataset,
            candidate_map=candidate_map,
            production_map=production_map,
            decision=decision,
            requested_by=requested_by,
        )
        .returning(model_promotions)
    ).one()
    return Promotion.model_validate(row._mapping)


def promotions(
    conn: sa.Connection,
    visible_to: str | None,
    model_name: str | None = None,
    limit: int = 200,
) -> list[Promotion]:
    """Newest first, those ``visible_to`` may read (``None``: all), optionally one model's."""
    t = model_promotions
    query = (
        sa.select(t)
        .where(_visible(t, visible_to))
        .order_by(t.c.created_at.desc(), t.c.id.desc())
        .limit(limit)
    )
    if model_name is not None:
        query = query.where(t.c.model_name == model_name)
    return [Promotion.model_validate(r._mapping) for r in conn.execute(query)]
