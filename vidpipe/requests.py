"""On-demand detection requests: the row of each request and its lifecycle transitions.

A request moves ``created -> processing -> processed -> finished``; ``failed`` (with a reason)
and ``interrupted`` (the client went away before the result was delivered) end it early.
Each step is a timestamp column set once by the database clock (``now()``), NULL until
reached; a check constraint in :data:`vidpipe.db.detection_requests` refuses timestamps out
of order, so where a request is (or where it stopped) is its latest non-null timestamp.

Who moves it: the dashboard creates it (or records it ``failed`` when the image is refused),
the detector marks ``processing`` then ``processed`` or ``failed``, the dashboard marks
``finished`` when it delivers the result and ``interrupted`` when the client left first.
Every transition is one conditional ``UPDATE``: it happens only from the states it may
follow, so concurrent actors (a detector replaying a message, a client closing its socket
as the result arrives) cannot produce an impossible record. A transition that does not
apply returns ``False`` and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from vidpipe.db import REQUEST_STEPS, detection_requests
from vidpipe.events import Detection, ModelRef

RequestState = Literal["created", "processing", "processed", "finished", "failed", "interrupted"]
#: States after which nothing else happens to a request.
FINAL_STATES: frozenset[str] = frozenset({"finished", "failed", "interrupted"})

_T = detection_requests.c
#: checked in this order, the first non-null is the state (the check constraint makes it
#: the latest timestamp too)
_PRECEDENCE = ("interrupted", "failed", "finished", "processed", "processing", "created")


class RequestResult(BaseModel):
    """What the detector found: the model version that ran and the kept detections."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    model: ModelRef
    detections: list[Detection]


class RequestRecord(BaseModel):
    """One stored request (timestamps UTC; ``None`` until reached)."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    request_id: str
    client_id: str
    state: RequestState
    source: str
    created_by: str | None
    image_bytes: int | None
    width: int | None
    height: int | None
    model_name: str
    model_alias: str | None
    model_version: str | None
    score_threshold: float
    classes: list[str]
    created_at: datetime
    processing_at: datetime | None
    processed_at: datetime | None
    finished_at: datetime | None
    failed_at: datetime | None
    interrupted_at: datetime | None
    failure_reason: str | None
    result: RequestResult | None

    @property
    def timestamps(self) -> dict[str, datetime | None]:
        """Each lifecycle step's time, in lifecycle order."""
        return {step: getattr(self, f"{step}_at") for step in REQUEST_STEPS}


def state_of(row: Any) -> RequestState:
    """The state of a row (anything with the ``*_at`` attributes)."""
    for step in _PRECEDENCE:
        if getattr(row, f"{step}_at") is not None:
            return step  # type: ignore[return-value]
    raise ValueError("a request row without created_at")


def record_of(row: Any) -> RequestRecord:
    """A :class:`RequestRecord` from a selected ``detection_requests`` row."""
    values = dict(row._mapping)
    values.pop("idempotency_key", None)
    values.pop("body_sha256", None)
    values["classes"] = list(values["classes"] or [])
    return RequestRecord(state=state_of(row), **values)


def get_request(conn: sa.Connection, request_id: str) -> RequestRecord | None:
    """The request, whoever owns it (callers scope it), or None."""
    row = conn.execute(
        sa.select(detection_requests).where(_T.request_id == request_id)
    ).one_or_none()
    return None if row is None else record_of(row)


def _transition(
    conn: sa.Connection, request_id: str, where: list[Any], values: dict[str, Any]
) -> bool:
    """One conditional update, committed; whether it applied."""
    updated = conn.execute(
        sa.update(detection_requests)
        .where(_T.request_id == request_id, *where)
        .values(**values)
        .returning(_T.request_id)
    ).one_or_none()
    conn.commit()
    return updated is not None


_OPEN = [_T.failed_at.is_(None), _T.interrupted_at.is_(None)]


def mark_processing(conn: sa.Connection, request_id: str) -> bool:
    """``created -> processing``. False when it is already further, or ended (an
    interrupted request is not processed)."""
    return _transition(
        conn, request_id, [_T.processing_at.is_(None), *_OPEN], {"processing_at": sa.func.now()}
    )


def mark_processed(conn: sa.Connection, request_id: str, result: RequestResult) -> bool:
    """``processing -> processed`` with the result. False when the request ended meanwhile
    (the client left) or was processed already (a replay)."""
    return _transition(
        conn,
        request_id,
        [_T.processing_at.is_not(None), _T.processed_at.is_(None), *_OPEN],
        {"processed_at": sa.func.now(), "result": result.model_dump(mode="json")},
    )


def mark_failed(conn: sa.Connection, request_id: str, reason: str) -> bool:
    """``created|processing -> failed`` with ``reason``. False when it was processed or
    ended already."""
    return _transition(
        conn,
        request_id,
        [_T.processed_at.is_(None), *_OPEN],
        {"failed_at": sa.func.now(), "failure_reason": reason[:2000]},
    )


def mark_finished(conn: sa.Connection, request_id: str) -> bool:
    """``processed -> finished`` (the result was delivered). False unless it is processed."""
    return _transition(
        conn,
        request_id,
        [_T.processed_at.is_not(None), _T.finished_at.is_(None), *_OPEN],
        {"finished_at": sa.func.now()},
    )


def mark_interrupted(conn: sa.Connection, request_id: str) -> bool:
    """Any state before the end -> ``interrupted`` (the client left before delivery)."""
    return _transition(
        conn, request_id, [_T.finished_at.is_(None), *_OPEN], {"interrupted_at": sa.func.now()}
    )
