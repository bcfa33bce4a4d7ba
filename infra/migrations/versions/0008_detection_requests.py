"""On-demand detection requests: ``detection_requests``, one row per request with its
lifecycle timestamps (created, processing, processed, finished | failed | interrupted) and a
check that they are in order.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "detection_requests",
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("image_bytes", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("model_alias", sa.Text(), nullable=True),
        sa.Column("model_version", sa.Text(), nullable=True),
        sa.Column("score_threshold", sa.Double(), nullable=False),
        sa.Column(
            "classes", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("body_sha256", sa.Text(), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("processing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("interrupted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("source IN ('upload', 'url')", name="ck_detection_requests_source"),
        sa.CheckConstraint(
            "(failed_at IS NULL) = (failure_reason IS NULL)",
            name="ck_detection_requests_failure_reason",
        ),
        sa.CheckConstraint(
            "(model_alias IS NULL) <> (model_version IS NULL)",
            name="ck_detection_requests_alias_xor_version",
        ),
        sa.CheckConstraint(
            "(processing_at IS NULL OR processing_at >= created_at)"
            " AND (processed_at IS NULL OR (processing_at IS NOT NULL"
            " AND processed_at >= processing_at))"
            " AND (finished_at IS NULL OR (processed_at IS NOT NULL"
            " AND finished_at >= processed_at))"
            " AND (failed_at IS NULL OR (processed_at IS NULL AND failed_at >= created_at"
            " AND failed_at >= COALESCE(processing_at, created_at)))"
            " AND (interrupted_at IS NULL OR (finished_at IS NULL AND failed_at IS NULL"
            " AND interrupted_at >= GREATEST(created_at, processing_at, processed_at)))",
            name="ck_detection_requests_timestamps_ordered",
        ),
        sa.CheckConstraint(
            "score_threshold >= 0 AND score_threshold <= 1",
            name="ck_detection_requests_score_threshold_range",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name="fk_detection_requests_client_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id"),
        sa.UniqueConstraint(
            "client_id", "idempotency_key", name="uq_detection_requests_idempotency_key"
        ),
    )
    op.create_index(
        "ix_detection_requests_client_created",
        "detection_requests",
        ["client_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_detection_requests_client_created", table_name="detection_requests")
    op.drop_table("detection_requests")
