"""Dashboard tenancy: users, per-client API keys, and training jobs submitted for the trainer.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    if nullable:
        return sa.Column(name, sa.DateTime(timezone=True), nullable=True)
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _client_fk(table: str, nullable: bool) -> sa.Column:
    return sa.Column(
        "client_id",
        sa.Text(),
        sa.ForeignKey("clients.client_id", ondelete="CASCADE", name=f"fk_{table}_client_id"),
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        _client_fk("users", nullable=True),
        sa.Column("role", sa.Text(), nullable=False),
        _timestamp("created_at"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.CheckConstraint(
            "role IN ('viewer', 'operator', 'admin', 'superadmin')", name="ck_users_role"
        ),
        # A superadmin belongs to no client; everyone else belongs to exactly one.
        sa.CheckConstraint(
            "(role = 'superadmin') = (client_id IS NULL)", name="ck_users_superadmin_no_client"
        ),
    )
    op.create_index("ix_users_client_id", "users", ["client_id"])
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.BigInteger(), primary_key=True, autoincrement=True),
        _client_fk("api_keys", nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        # SHA-256 hex of the random secret: keys carry 256 bits of entropy, so a fast hash
        # is enough and lets each request find its key by index.
        sa.Column("key_hash", sa.Text(), nullable=False),
        # Keys never manage users or keys: at most operator.
        sa.Column("role", sa.Text(), nullable=False, server_default=sa.text("'operator'")),
        _timestamp("created_at"),
        _timestamp("revoked_at", nullable=True),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        sa.CheckConstraint("role IN ('viewer', 'operator')", name="ck_api_keys_role"),
    )
    op.create_index("ix_api_keys_client_id", "api_keys", ["client_id"])
    op.create_table(
        "training_jobs",
        sa.Column("job_id", sa.BigInteger(), primary_key=True, autoincrement=True),
        _client_fk("training_jobs", nullable=False),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("base_model", sa.Text(), nullable=True),
        sa.Column("architecture", sa.Text(), nullable=False),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("learning_rate", sa.Double(), nullable=False),
        sa.Column("image_size", sa.Integer(), nullable=False),
        sa.Column("eval_dataset", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False, server_default=sa.text("'queued'")),
        sa.Column("reason", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="ck_training_jobs_state",
        ),
        sa.CheckConstraint(
            "epochs > 0 AND batch_size > 0 AND learning_rate > 0 AND image_size > 0",
            name="ck_training_jobs_positive",
        ),
    )
    op.create_index("ix_training_jobs_client_id", "training_jobs", ["client_id"])
    # The trainer polls for the oldest queued job.
    op.create_index(
        "ix_training_jobs_queued",
        "training_jobs",
        ["created_at"],
        postgresql_where=sa.text("state = 'queued'"),
    )


def downgrade() -> None:
    op.drop_table("training_jobs")
    op.drop_table("api_keys")
    op.drop_table("users")
