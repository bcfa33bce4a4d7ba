"""SQLAlchemy Core tables the dashboard reads and writes (schema: infra/migrations) and the
engine. Each request gets one pooled connection; writes commit explicitly."""

from __future__ import annotations

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from vidpipe.settings import PostgresSettings

metadata = sa.MetaData()

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

cameras = sa.Table(
    "cameras",
    metadata,
    sa.Column("camera_id", sa.Text, primary_key=True),
    sa.Column("client_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("fps", sa.Double, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("client_id", sa.Text),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.BigInteger, primary_key=True),
    sa.Column("client_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("key_hash", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

training_jobs = sa.Table(
    "training_jobs",
    metadata,
    sa.Column("job_id", sa.BigInteger, primary_key=True),
    sa.Column("client_id", sa.Text, nullable=False),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("base_model", sa.Text),
    sa.Column("architecture", sa.Text, nullable=False),
    sa.Column("epochs", sa.Integer, nullable=False),
    sa.Column("batch_size", sa.Integer, nullable=False),
    sa.Column("learning_rate", sa.Double, nullable=False),
    sa.Column("image_size", sa.Integer, nullable=False),
    sa.Column("eval_dataset", sa.Text),
    sa.Column("state", sa.Text, nullable=False, server_default="queued"),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("created_by", sa.Text),
)

_LATENCY = [
    f"{hop}_{q}_ms" for hop in ("decoded", "detected", "rendered") for q in ("p50", "p95", "p99")
]

performance_reports = sa.Table(
    "performance_reports",
    metadata,
    sa.Column("client_id", sa.Text, primary_key=True),
    sa.Column("camera_id", sa.Text, primary_key=True),
    sa.Column("model_name", sa.Text, primary_key=True),
    sa.Column("model_version", sa.Text, primary_key=True),
    sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("frames", sa.BigInteger),
    sa.Column("dropped", sa.BigInteger),
    sa.Column("effective_fps", sa.Double),
    *[sa.Column(name, sa.Double) for name in _LATENCY],
    sa.Column("mean_score", sa.Double),
    sa.Column("detections_by_label", postgresql.JSONB),
    sa.Column("generated_at", sa.DateTime(timezone=True)),
)

accuracy_reports = sa.Table(
    "accuracy_reports",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("dataset", sa.Text),
    sa.Column("model_name", sa.Text),
    sa.Column("model_version", sa.Text),
    sa.Column("map", sa.Double),
    sa.Column("map_50", sa.Double),
    sa.Column("map_75", sa.Double),
    sa.Column("per_class_ap", postgresql.JSONB),
    sa.Column("images", sa.Integer),
    sa.Column("mlflow_run_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)),
)


model_promotions = sa.Table(
    "model_promotions",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("model_name", sa.Text),
    sa.Column("candidate_version", sa.Text),
    sa.Column("production_version", sa.Text),
    sa.Column("dataset", sa.Text),
    sa.Column("candidate_map", sa.Double),
    sa.Column("production_map", sa.Double),
    sa.Column("decision", sa.Text),
    sa.Column("requested_by", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)),
)


def create_engine(settings: PostgresSettings, pool_size: int = 8) -> sa.Engine:
    """A pooled engine on the libpq DSN (URL or ``key=value`` form); connects lazily."""
    dsn = settings.dsn.get_secret_value()
    return sa.create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(dsn),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )
