"""Security: sealed camera secrets, report owners, disabled users, the reserved client 'shared'.

- ``cameras.url_secret``: the full URL sealed with Fernet when it has secrets; ``url`` keeps
  it masked. Existing URLs with secrets are sealed here with the first key of
  ``VIDPIPE_CAMERAS__KEYS`` (or the development key), as :mod:`vidpipe.cameras` does.
- ``accuracy_reports.client_id`` / ``model_promotions.client_id``: the owning client,
  ``'shared'``, or NULL. Backfill: the client of a ``client/name`` dataset; else the
  existing client whose id prefixes the model name (``<client>-<arch>``, the trainer's
  names); else ``'shared'`` for coco-centernet on a shared dataset; else NULL (platform
  administrators only).
- ``users.disabled_at``; ``clients`` may not be called ``shared``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vidpipe.cameras import UrlCipher
from vidpipe.settings import ServiceSettings
from vidpipe.urls import has_secrets

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REPORT_TABLES = ("accuracy_reports", "model_promotions")


def _cipher() -> UrlCipher:
    return UrlCipher.of(ServiceSettings().cameras)


def _seal_camera_urls() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT camera_id, url FROM cameras")).all()
    secret = [r for r in rows if has_secrets(r.url)]
    if not secret:
        return
    cipher = _cipher()
    for row in secret:
        masked, token = cipher.seal(row.url)
        conn.execute(
            sa.text("UPDATE cameras SET url = :u, url_secret = :t WHERE camera_id = :c"),
            {"u": masked, "t": token, "c": row.camera_id},
        )


def _backfill_owner(table: str) -> None:
    op.execute(
        f"UPDATE {table} r SET client_id = c.client_id FROM clients c"
        " WHERE r.client_id IS NULL AND position('/' in r.dataset) > 0"
        " AND split_part(r.dataset, '/', 1) = c.client_id"
    )
    op.execute(
        f"UPDATE {table} r SET client_id = (SELECT c.client_id FROM clients c"
        " WHERE left(r.model_name, length(c.client_id) + 1) = c.client_id || '-'"
        " ORDER BY length(c.client_id) DESC LIMIT 1) WHERE r.client_id IS NULL"
    )
    op.execute(
        f"UPDATE {table} SET client_id = 'shared' WHERE client_id IS NULL"
        " AND model_name = 'coco-centernet' AND position('/' in dataset) = 0"
    )


def upgrade() -> None:
    op.add_column("cameras", sa.Column("url_secret", sa.Text(), nullable=True))
    _seal_camera_urls()
    for table in REPORT_TABLES:
        op.add_column(table, sa.Column("client_id", sa.Text(), nullable=True))
        _backfill_owner(table)
        op.create_index(f"ix_{table}_client_id", table, ["client_id"])
    op.add_column("users", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint("ck_clients_not_shared", "clients", "client_id <> 'shared'")


def downgrade() -> None:
    op.drop_constraint("ck_clients_not_shared", "clients")
    op.drop_column("users", "disabled_at")
    for table in REPORT_TABLES:
        op.drop_index(f"ix_{table}_client_id", table)
        op.drop_column(table, "client_id")
    conn = op.get_bind()
    sealed = conn.execute(
        sa.text("SELECT camera_id, url, url_secret FROM cameras WHERE url_secret IS NOT NULL")
    ).all()
    if sealed:
        cipher = _cipher()
        for row in sealed:
            conn.execute(
                sa.text("UPDATE cameras SET url = :u WHERE camera_id = :c"),
                {"u": cipher.open(row.url, row.url_secret), "c": row.camera_id},
            )
    op.drop_column("cameras", "url_secret")
