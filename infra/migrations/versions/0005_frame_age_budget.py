"""Per-client frame-age budget: ``client_configs.max_frame_age_ms`` (NULL: the detector's).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("client_configs", sa.Column("max_frame_age_ms", sa.Integer(), nullable=True))
    op.create_check_constraint(
        "ck_client_configs_max_frame_age_positive",
        "client_configs",
        "max_frame_age_ms IS NULL OR max_frame_age_ms > 0",
    )


def downgrade() -> None:
    op.drop_constraint("ck_client_configs_max_frame_age_positive", "client_configs")
    op.drop_column("client_configs", "max_frame_age_ms")
