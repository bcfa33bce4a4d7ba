"""Camera ids unique per client: ``cameras`` primary key ``(client_id, camera_id)``.

A camera id taken in one client no longer answers 409 in another (no cross-tenant oracle);
every object key and pointer already carries the client. The index on ``client_id`` goes:
the primary key leads with it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("cameras_pkey", "cameras", type_="primary")
    op.create_primary_key("cameras_pkey", "cameras", ["client_id", "camera_id"])
    op.drop_index("ix_cameras_client_id", table_name="cameras")


def downgrade() -> None:
    # fails if two clients now hold the same camera id; nothing is merged silently
    op.create_index("ix_cameras_client_id", "cameras", ["client_id"])
    op.drop_constraint("cameras_pkey", "cameras", type_="primary")
    op.create_primary_key("cameras_pkey", "cameras", ["camera_id"])
