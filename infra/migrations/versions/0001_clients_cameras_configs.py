"""Clients, their cameras, and each client's detection configuration.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("client_id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        _timestamp("created_at"),
    )
    op.create_table(
        "cameras",
        sa.Column("camera_id", sa.Text(), primary_key=True),
        sa.Column(
            "client_id",
            sa.Text(),
            sa.ForeignKey("clients.client_id", ondelete="CASCADE", name="fk_cameras_client_id"),
            nullable=False,
        ),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("fps", sa.Double(), nullable=False, server_default=sa.text("10")),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint("fps > 0", name="ck_cameras_fps_positive"),
    )
    op.create_index("ix_cameras_client_id", "cameras", ["client_id"])
    op.create_table(
        "client_configs",
        sa.Column(
            "client_id",
            sa.Text(),
            sa.ForeignKey(
                "clients.client_id", ondelete="CASCADE", name="fk_client_configs_client_id"
            ),
            primary_key=True,
        ),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("model_alias", sa.Text(), nullable=True),
        sa.Column("model_version", sa.Text(), nullable=True),
        sa.Column("score_threshold", sa.Double(), nullable=False, server_default=sa.text("0.3")),
        # Empty array means "all classes".
        sa.Column(
            "classes_of_interest",
            postgresql.ARRAY(sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'::text[]"),
        ),
        sa.Column("sampling_fps", sa.Double(), nullable=True),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "score_threshold >= 0 AND score_threshold <= 1",
            name="ck_client_configs_score_threshold_range",
        ),
        sa.CheckConstraint(
            "(model_alias IS NULL) <> (model_version IS NULL)",
            name="ck_client_configs_alias_xor_version",
        ),
        sa.CheckConstraint(
            "sampling_fps IS NULL OR sampling_fps > 0",
            name="ck_client_configs_sampling_fps_positive",
        ),
    )


def downgrade() -> None:
    op.drop_table("client_configs")
    op.drop_index("ix_cameras_client_id", table_name="cameras")
    op.drop_table("cameras")
    op.drop_table("clients")
