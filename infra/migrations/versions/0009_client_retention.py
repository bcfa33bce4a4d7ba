"""Per-client retention: ``clients.retention_days`` (NULL: the platform default), and
``client_configs.sampling_fps`` dropped (stored and editable, read by nothing: a camera's
``fps`` is what its decoder samples at).

Revision ID: 0009_client_retention
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_client_retention"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_check_constraint(
        "ck_clients_retention_days_positive",
        "clients",
        "retention_days IS NULL OR retention_days > 0",
    )
    op.drop_constraint("ck_client_configs_sampling_fps_positive", "client_configs")
    op.drop_column("client_configs", "sampling_fps")


def downgrade() -> None:
    op.add_column("client_configs", sa.Column("sampling_fps", sa.Double(), nullable=True))
    op.create_check_constraint(
        "ck_client_configs_sampling_fps_positive",
        "client_configs",
        "sampling_fps IS NULL OR sampling_fps > 0",
    )
    op.drop_constraint("ck_clients_retention_days_positive", "clients")
    op.drop_column("clients", "retention_days")
