"""Alembic environment: online migrations only, against the vidpipe Postgres database.

The URL comes from ``config.attributes["sqlalchemy_url"]`` (set by
``infra.local.provision.upgrade_database``), else from ServiceSettings (``VIDPIPE_POSTGRES__DSN``).
The target schema is :data:`vidpipe.db.metadata`, so ``alembic revision --autogenerate``
writes the difference between the database and the code's one schema.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from infra.local.provision import sqlalchemy_url
from vidpipe.db import metadata
from vidpipe.settings import ServiceSettings

config = context.config


def _url() -> URL | str:
    url: URL | str | None = config.attributes.get("sqlalchemy_url")
    if url is not None:
        return url
    return sqlalchemy_url(ServiceSettings().postgres.dsn.get_secret_value())


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if config.config_file_name is not None:
    fileConfig(config.config_file_name)  # only when run from the alembic CLI
if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
