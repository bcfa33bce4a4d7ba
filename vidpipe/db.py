"""The Postgres schema: one SQLAlchemy Core ``MetaData`` holding every vidpipe table.

This module is the schema's single source. Alembic's ``env.py`` targets :data:`metadata`,
migrations under ``infra/migrations/versions`` evolve the database towards it, and an
integration test compares a migrated database with it (alembic autogenerate), so the two
cannot drift apart. All SQL of the stores is built from these table objects.

Time columns are ``timestamptz``; ids of clients and cameras follow :mod:`vidpipe.ids`.
"""

from __future__ import annotations

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from vidpipe.settings import PostgresSettings

metadata = sa.MetaData()


def _created(name: str = "created_at") -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _client_fk(table: str, *, nullable: bool = False, primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(
        "client_id",
        sa.Text(),
        sa.ForeignKey("clients.client_id", ondelete="CASCADE", name=f"fk_{table}_client_id"),
        nullable=nullable,
        primary_key=primary_key,
    )


#: Owner of records every client may read (the ``client_id`` of shared accuracy reports and
#: promotions); reserved, so no client can be called that.
SHARED = "shared"


def _owner() -> sa.Column[str]:
    """``client_id`` of a record a client owns, :data:`SHARED`, or NULL (written before
    owners were recorded and not attributable: platform administrators only)."""
    return sa.Column("client_id", sa.Text(), nullable=True)


clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.Text(), primary_key=True),
    sa.Column("name", sa.Text(), nullable=False),
    _created(),
    # days its frames, annotations, renders, clips, requests and metrics are kept; NULL: the
    # platform default (vidpipe.retention)
    sa.Column("retention_days", sa.Integer(), nullable=True),
    # 'shared' marks records every client may read (accuracy_reports, model_promotions)
    sa.CheckConstraint(f"client_id <> '{SHARED}'", name="ck_clients_not_shared"),
    sa.CheckConstraint(
        "retention_days IS NULL OR retention_days > 0", name="ck_clients_retention_days_positive"
    ),
)

cameras = sa.Table(
    "cameras",
    metadata,
    # camera ids are unique per client (object keys and pointers carry the client)
    _client_fk("cameras", primary_key=True),
    sa.Column("camera_id", sa.Text(), primary_key=True),
    sa.Column("name", sa.Text(), nullable=True),
    # the URL with its secrets masked; the full URL, when it has secrets, sealed (Fernet)
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("url_secret", sa.Text(), nullable=True),
    sa.Column("fps", sa.Double(), nullable=False, server_default=sa.text("10")),
    sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    _created(),
    _created("updated_at"),
    sa.CheckConstraint("fps > 0", name="ck_cameras_fps_positive"),
)

client_configs = sa.Table(
    "client_configs",
    metadata,
    _client_fk("client_configs", primary_key=True),
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
    _created("updated_at"),
    # frame-age budget in ms; NULL: the detector's default
    sa.Column("max_frame_age_ms", sa.Integer(), nullable=True),
    sa.CheckConstraint(
        "score_threshold >= 0 AND score_threshold <= 1",
        name="ck_client_configs_score_threshold_range",
    ),
    sa.CheckConstraint(
        "(model_alias IS NULL) <> (model_version IS NULL)",
        name="ck_client_configs_alias_xor_version",
    ),
    sa.CheckConstraint(
        "max_frame_age_ms IS NULL OR max_frame_age_ms > 0",
        name="ck_client_configs_max_frame_age_positive",
    ),
)

#: Latency columns of ``performance_reports``: ms from capture to each hop, percentiles.
LATENCY_COLUMNS = tuple(
    f"{hop}_{q}_ms" for hop in ("decoded", "detected", "rendered") for q in ("p50", "p95", "p99")
)

performance_reports = sa.Table(
    "performance_reports",
    metadata,
    sa.Column("client_id", sa.Text(), nullable=False),
    sa.Column("camera_id", sa.Text(), nullable=False),
    # '' when frames were dropped before a model ran (the key has no NULLs)
    sa.Column("model_name", sa.Text(), nullable=False, server_default=sa.text("''")),
    sa.Column("model_version", sa.Text(), nullable=False, server_default=sa.text("''")),
    sa.Column("hour", sa.DateTime(timezone=True), nullable=False),  # UTC hour of capture
    sa.Column("frames", sa.BigInteger(), nullable=False),
    sa.Column("dropped", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    sa.Column("effective_fps", sa.Double(), nullable=True),
    *[sa.Column(name, sa.Double(), nullable=True) for name in LATENCY_COLUMNS],
    sa.Column("mean_score", sa.Double(), nullable=True),
    sa.Column(
        "detections_by_label",
        postgresql.JSONB(),
        nullable=False,
        server_default=sa.text("'{}'::jsonb"),
    ),
    _created("generated_at"),
    sa.PrimaryKeyConstraint(
        "client_id",
        "camera_id",
        "model_name",
        "model_version",
        "hour",
        name="pk_performance_reports",
    ),
    sa.CheckConstraint("frames >= 0", name="ck_performance_reports_frames_nonnegative"),
    sa.CheckConstraint(
        "dropped >= 0 AND dropped <= frames", name="ck_performance_reports_dropped_range"
    ),
    sa.Index("ix_performance_reports_hour", "hour"),
)

accuracy_reports = sa.Table(
    "accuracy_reports",
    metadata,
    sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
    sa.Column("dataset", sa.Text(), nullable=False),
    sa.Column("model_name", sa.Text(), nullable=False),
    sa.Column("model_version", sa.Text(), nullable=False),
    sa.Column("map", sa.Double(), nullable=True),
    sa.Column("map_50", sa.Double(), nullable=True),
    sa.Column("map_75", sa.Double(), nullable=True),
    sa.Column(
        "per_class_ap", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")
    ),
    sa.Column("images", sa.Integer(), nullable=True),
    sa.Column("mlflow_run_id", sa.Text(), nullable=True),
    _created(),
    _owner(),
    sa.Index("ix_accuracy_reports_model_dataset", "model_name", "model_version", "dataset"),
    sa.Index("ix_accuracy_reports_client_id", "client_id"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.BigInteger(), primary_key=True, autoincrement=True),
    sa.Column("email", sa.Text(), nullable=False),
    sa.Column("password_hash", sa.Text(), nullable=False),
    _client_fk("users", nullable=True),
    sa.Column("role", sa.Text(), nullable=False),
    _created(),
    # a disabled user cannot sign in and has no sessions
    sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("email", name="uq_users_email"),
    sa.CheckConstraint(
        "role IN ('viewer', 'operator', 'admin', 'superadmin')", name="ck_users_role"
    ),
    # A superadmin belongs to no client; everyone else belongs to exactly one.
    sa.CheckConstraint(
        "(role = 'superadmin') = (client_id IS NULL)", name="ck_users_superadmin_no_client"
    ),
    sa.Index("ix_users_client_id", "client_id"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.BigInteger(), primary_key=True, autoincrement=True),
    _client_fk("api_keys"),
    sa.Column("name", sa.Text(), nullable=False),
    # SHA-256 hex of a 256-bit random secret: a fast hash suffices and is found by index.
    sa.Column("key_hash", sa.Text(), nullable=False),
    sa.Column("role", sa.Text(), nullable=False, server_default=sa.text("'operator'")),
    _created(),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    sa.CheckConstraint("role IN ('viewer', 'operator')", name="ck_api_keys_role"),
    sa.Index("ix_api_keys_client_id", "client_id"),
)

training_jobs = sa.Table(
    "training_jobs",
    metadata,
    sa.Column("job_id", sa.BigInteger(), primary_key=True, autoincrement=True),
    _client_fk("training_jobs"),
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
    _created(),
    _created("updated_at"),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_by", sa.Text(), nullable=True),
    # claims of the job; a job whose trainer died is re-queued until this reaches its limit
    sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    # fencing: the trainer holding the claim and the claim's token (incremented on every
    # claim and recovery); a trainer's writes succeed only while both still match
    sa.Column("trainer_id", sa.Text(), nullable=True),
    sa.Column("fence_token", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    # what a succeeded job registered
    sa.Column("model_name", sa.Text(), nullable=True),
    sa.Column("model_version", sa.Text(), nullable=True),
    sa.Column("mlflow_run_id", sa.Text(), nullable=True),
    sa.CheckConstraint(
        "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
        name="ck_training_jobs_state",
    ),
    sa.CheckConstraint(
        "epochs > 0 AND batch_size > 0 AND learning_rate > 0 AND image_size > 0",
        name="ck_training_jobs_positive",
    ),
    sa.Index("ix_training_jobs_client_id", "client_id"),
    # trainers poll for the oldest queued job
    sa.Index("ix_training_jobs_queued", "created_at", postgresql_where=sa.text("state = 'queued'")),
)

model_promotions = sa.Table(
    "model_promotions",
    metadata,
    sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.Text(), nullable=False),
    sa.Column("candidate_version", sa.Text(), nullable=False),
    sa.Column("production_version", sa.Text(), nullable=True),
    sa.Column("dataset", sa.Text(), nullable=False),
    sa.Column("candidate_map", sa.Double(), nullable=True),
    sa.Column("production_map", sa.Double(), nullable=True),
    sa.Column("decision", sa.Text(), nullable=False),
    sa.Column("requested_by", sa.Text(), nullable=True),
    _created(),
    _owner(),
    sa.CheckConstraint(
        "decision IN ('promoted', 'refused', 'forced')", name="ck_model_promotions_decision"
    ),
    sa.Index("ix_model_promotions_model", "model_name", "created_at"),
    sa.Index("ix_model_promotions_client_id", "client_id"),
)


#: The lifecycle of an on-demand request, in order; each is a timestamp, NULL until reached.
#: ``failed`` (with ``failure_reason``) and ``interrupted`` end a request early.
REQUEST_STEPS = ("created", "processing", "processed", "finished", "failed", "interrupted")

detection_requests = sa.Table(
    "detection_requests",
    metadata,
    sa.Column("request_id", sa.Text(), primary_key=True),  # uuid4 hex, vidpipe.ids
    _client_fk("detection_requests"),
    # who asked: a user's e-mail or "key:<name>"
    sa.Column("created_by", sa.Text(), nullable=True),
    sa.Column("source", sa.Text(), nullable=False),  # 'upload' or 'url'
    sa.Column("image_bytes", sa.Integer(), nullable=True),
    sa.Column("width", sa.Integer(), nullable=True),
    sa.Column("height", sa.Integer(), nullable=True),
    sa.Column("model_name", sa.Text(), nullable=False),
    sa.Column("model_alias", sa.Text(), nullable=True),
    sa.Column("model_version", sa.Text(), nullable=True),
    sa.Column("score_threshold", sa.Double(), nullable=False),
    sa.Column(
        "classes", postgresql.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'")
    ),
    # a retried POST with the same Idempotency-Key (and body) gets the same request
    sa.Column("idempotency_key", sa.Text(), nullable=True),
    sa.Column("body_sha256", sa.Text(), nullable=True),
    # what the detector found: {"model": {name, version}, "detections": [...]}
    sa.Column("result", postgresql.JSONB(), nullable=True),
    sa.Column("failure_reason", sa.Text(), nullable=True),
    _created(),
    sa.Column("processing_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("interrupted_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("source IN ('upload', 'url')", name="ck_detection_requests_source"),
    sa.CheckConstraint(
        "score_threshold >= 0 AND score_threshold <= 1",
        name="ck_detection_requests_score_threshold_range",
    ),
    sa.CheckConstraint(
        "(model_alias IS NULL) <> (model_version IS NULL)",
        name="ck_detection_requests_alias_xor_version",
    ),
    # Timestamps in lifecycle order: each step only after the one before it; failed and
    # interrupted end a request (nothing after them) and exclude each other and finished.
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
        "(failed_at IS NULL) = (failure_reason IS NULL)",
        name="ck_detection_requests_failure_reason",
    ),
    sa.UniqueConstraint(
        "client_id", "idempotency_key", name="uq_detection_requests_idempotency_key"
    ),
    sa.Index("ix_detection_requests_client_created", "client_id", "created_at"),
)


def create_engine(settings: PostgresSettings, pool_size: int = 4) -> sa.Engine:
    """A pooled engine on the libpq DSN (URL or ``key=value`` form); connects lazily.

    ``pool_pre_ping`` checks a pooled connection before use, so a Postgres restart costs
    one reconnect instead of an error on a dead connection.
    """
    dsn = settings.dsn.get_secret_value()
    return sa.create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(dsn, connect_timeout=5),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )
