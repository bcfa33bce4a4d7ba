"""Idempotent provisioning of shared resources: databases, schema, buckets, topics.

Works against the local stack and against the production compose services alike: every
step only creates what is missing. Raises :class:`StackError` naming the step that failed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import boto3
import psycopg
from alembic import command
from alembic.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL

from infra.local.health import maintenance_conninfo
from infra.local.processes import StackError
from vidpipe.bus import ensure_topics
from vidpipe.settings import ServiceSettings
from vidpipe.topics import BUCKETS

logger = logging.getLogger(__name__)

#: The MLflow server's backend store lives in its own database next to vidpipe's.
MLFLOW_DATABASE = "mlflow"
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def sqlalchemy_url(dsn: str, database: str | None = None) -> URL:
    """A libpq DSN (URL or ``key=value``) as a SQLAlchemy URL using the psycopg 3 driver."""
    params = {key: str(value) for key, value in conninfo_to_dict(dsn).items() if value is not None}
    known = {"user", "password", "host", "port", "dbname"}
    return URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=params.get("password"),
        host=params.get("host"),
        port=int(params["port"]) if params.get("port") else None,
        database=database or params.get("dbname"),
        query={key: value for key, value in params.items() if key not in known},
    )


def create_databases(settings: ServiceSettings) -> None:
    """CREATE DATABASE for vidpipe's (the DSN's dbname) and ``mlflow`` when absent."""
    wanted = [
        str(conninfo_to_dict(settings.postgres.dsn.get_secret_value())["dbname"]),
        MLFLOW_DATABASE,
    ]
    try:
        with psycopg.connect(maintenance_conninfo(settings), autocommit=True) as conn:
            for name in wanted:
                row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if row.fetchone() is None:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    logger.info("postgres: created database %s", name)
    except psycopg.Error as exc:
        raise StackError(f"creating databases {wanted} failed: {exc}") from exc


def upgrade_database(dsn: str) -> None:
    """Run the alembic migrations in ``infra/migrations`` up to ``head`` on ``dsn``."""
    # Imported here: importing alembic logs a line per plugin, noise for `down`/`status`.

    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise StackError(f"migrations not found at {MIGRATIONS_DIR} (install vidpipe editable)")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an ini option, so a '%' in a password is not interpolated.
    config.attributes["sqlalchemy_url"] = sqlalchemy_url(dsn)
    try:
        command.upgrade(config, "head")
    except Exception as exc:  # alembic surfaces driver and script errors as many types
        raise StackError(f"alembic upgrade head failed: {type(exc).__name__}: {exc}") from exc
    logger.info("postgres: schema at alembic head")


def create_buckets(settings: ServiceSettings) -> None:
    """Create every bucket in ``vidpipe.topics.BUCKETS`` that does not exist yet."""
    s3 = boto3.client(
        "s3",
        endpoint_url=settings.s3.endpoint_url,
        aws_access_key_id=settings.s3.access_key.get_secret_value(),
        aws_secret_access_key=settings.s3.secret_key.get_secret_value(),
        region_name=settings.s3.region,
    )
    try:
        existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
        for bucket in BUCKETS:
            if bucket in existing:
                continue
            try:
                s3.create_bucket(Bucket=bucket)
                logger.info("s3: created bucket %s", bucket)
            except ClientError as exc:  # a concurrent `up` may have won the race
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
    except (BotoCoreError, ClientError) as exc:
        raise StackError(f"creating buckets at {settings.s3.endpoint_url} failed: {exc}") from exc


def create_topics(settings: ServiceSettings) -> None:
    """Create every topic in ``vidpipe.topics.TOPICS`` with its partition count."""
    try:
        for name in asyncio.run(ensure_topics(settings.kafka)):
            logger.info("kafka: created topic %s", name)
    except Exception as exc:  # aiokafka raises several unrelated types here
        raise StackError(f"creating topics failed: {type(exc).__name__}: {exc}") from exc


def provision_postgres(settings: ServiceSettings) -> None:
    create_databases(settings)
    upgrade_database(settings.postgres.dsn.get_secret_value())
