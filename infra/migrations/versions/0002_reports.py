"""Performance reports (hourly, from the Spark evaluator) and accuracy reports (mAP runs).

``performance_reports`` holds one row per (client, camera, model, model version, UTC hour of
capture time). Rows are replaced, never appended, when the evaluator re-runs a window, so the
key has no NULLs: frames without a model (dropped before detection) use ``model_name = ''``
and ``model_version = ''``. Latencies are milliseconds from capture to each hop
(decoded / detected / rendered), as approximate percentiles (see services/reports/report.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HOPS = ("decoded", "detected", "rendered")
_QUANTILES = ("p50", "p95", "p99")


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _latency_columns() -> list[sa.Column]:
    return [
        sa.Column(f"{hop}_{q}_ms", sa.Double(), nullable=True) for hop in _HOPS for q in _QUANTILES
    ]


def upgrade() -> None:
    op.create_table(
        "performance_reports",
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("camera_id", sa.Text(), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("model_version", sa.Text(), nullable=False, server_default=sa.text("''")),
        # Start of the UTC hour the frames were captured in.
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("frames", sa.BigInteger(), nullable=False),
        sa.Column("dropped", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        # (frames - 1) / seconds between first and last capture in the hour; NULL under 2 frames.
        sa.Column("effective_fps", sa.Double(), nullable=True),
        *_latency_columns(),
        sa.Column("mean_score", sa.Double(), nullable=True),
        sa.Column(
            "detections_by_label",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        _timestamp("generated_at"),
        sa.PrimaryKeyConstraint(
            "client_id",
            "camera_id",
            "model_name",
            "model_version",
            "hour",
            name="pk_performance_reports",
        ),
        sa.CheckConstraint("frames >= 0", name="ck_performance_reports_frames_nonnegative"),
        sa.CheckConstraint(
            "dropped >= 0 AND dropped <= frames", name="ck_performance_reports_dropped_range"
        ),
    )
    op.create_index("ix_performance_reports_hour", "performance_reports", ["hour"])
    op.create_table(
        "accuracy_reports",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("map", sa.Double(), nullable=True),
        sa.Column("map_50", sa.Double(), nullable=True),
        sa.Column("map_75", sa.Double(), nullable=True),
        sa.Column(
            "per_class_ap",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column("images", sa.Integer(), nullable=True),
        sa.Column("mlflow_run_id", sa.Text(), nullable=True),
        _timestamp("created_at"),
    )
    op.create_index(
        "ix_accuracy_reports_model_dataset",
        "accuracy_reports",
        ["model_name", "model_version", "dataset"],
    )


def downgrade() -> None:
    op.drop_index("ix_accuracy_reports_model_dataset", table_name="accuracy_reports")
    op.drop_table("accuracy_reports")
    op.drop_index("ix_performance_reports_hour", table_name="performance_reports")
    op.drop_table("performance_reports")
