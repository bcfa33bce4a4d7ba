"""The ``performance_reports`` row (schema: ``infra/migrations/versions/0002_reports.py``):
written by the evaluator's Spark job, read by the dashboard. Spark-free, so both can import it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ReportRow(BaseModel):
    """One (client, camera, model version, UTC hour) of ``performance_reports``.

    ``hour`` is the UTC hour's start; ``effective_fps`` frames/s over the frames' capture span;
    ``*_p50_ms``/``_p95_ms``/``_p99_ms`` capture → decoded / detections published / rendered
    latency percentiles in ms; ``detections_by_label`` label → count.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

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
