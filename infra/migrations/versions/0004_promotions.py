"""Trainer: crash-safety columns on ``training_jobs`` and the ``model_promotions`` audit log.

``attempts`` counts claims of a job (a trainer that dies mid-job leaves it ``running``; the
next trainer start re-queues it until ``attempts`` reaches its limit, then fails it).
``heartbeat_at`` is refreshed by the trainer running the job, so a live trainer's job is
never mistaken for a dead one. ``model_name``/``model_version``/``mlflow_run_id`` record
what a succeeded job registered.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "training_jobs",
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column(
        "training_jobs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("training_jobs", sa.Column("model_name", sa.Text(), nullable=True))
    op.add_column("training_jobs", sa.Column("model_version", sa.Text(), nullable=True))
    op.add_column("training_jobs", sa.Column("mlflow_run_id", sa.Text(), nullable=True))
    op.create_table(
        "model_promotions",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("candidate_version", sa.Text(), nullable=False),
        sa.Column("production_version", sa.Text(), nullable=True),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("candidate_map", sa.Double(), nullable=True),
        sa.Column("production_map", sa.Double(), nullable=True),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            "decision IN ('promoted', 'refused', 'forced')", name="ck_model_promotions_decision"
        ),
    )
    op.create_index("ix_model_promotions_model", "model_promotions", ["model_name", "created_at"])


def downgrade() -> None:
    op.drop_table("model_promotions")
    for column in ("mlflow_run_id", "model_version", "model_name", "heartbeat_at", "attempts"):
        op.drop_column("training_jobs", column)
