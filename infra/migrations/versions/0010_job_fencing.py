"""Trainer fencing: ``training_jobs.trainer_id`` (who holds the claim) and
``training_jobs.fence_token`` (incremented on every claim and recovery). A trainer's
heartbeat, finish, cancel acknowledgement and re-queue are conditional on both.

Revision ID: 0010_job_fencing
Revises: 0009_client_retention
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_job_fencing"
down_revision: str | None = "0009_client_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("training_jobs", sa.Column("trainer_id", sa.Text(), nullable=True))
    op.add_column(
        "training_jobs",
        sa.Column("fence_token", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.drop_column("training_jobs", "fence_token")
    op.drop_column("training_jobs", "trainer_id")
