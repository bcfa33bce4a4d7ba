"""Migration 0003 on a scratch database: upgrade, constraints, downgrade, upgrade again."""

from __future__ import annotations

import psycopg
import pytest
from alembic import command
from alembic.config import Config

from infra.local.provision import MIGRATIONS_DIR, sqlalchemy_url, upgrade_database

pytestmark = pytest.mark.integration

TABLES = {"users", "api_keys", "training_jobs"}


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def test_migration_0003_when_upgraded_and_downgraded_then_schema_follows(scratch_dsn: str) -> None:
    upgrade_database(scratch_dsn)
    assert _tables(scratch_dsn) >= TABLES
    with psycopg.connect(scratch_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO clients (client_id, name) VALUES ('c', 'c')")
        conn.execute(
            "INSERT INTO users (email, password_hash, client_id, role)"
            " VALUES ('a@x.io', 'h', 'c', 'admin'), ('r@x.io', 'h', NULL, 'superadmin')"
        )
        for bad in (
            "('b@x.io', 'h', NULL, 'admin')",  # only a superadmin has no client
            "('s@x.io', 'h', 'c', 'superadmin')",  # a superadmin has none
            "('o@x.io', 'h', 'c', 'owner')",  # unknown role
            "('a@x.io', 'h', 'c', 'viewer')",  # e-mail taken
        ):
            with pytest.raises(psycopg.IntegrityError):
                conn.execute(
                    f"INSERT INTO users (email, password_hash, client_id, role) VALUES {bad}"
                )
        job = conn.execute(
            "INSERT INTO training_jobs (client_id, dataset, architecture, epochs, batch_size,"
            " learning_rate, image_size) VALUES ('c', 'c/d.json', 'a', 1, 1, 0.1, 320)"
            " RETURNING state"
        ).fetchone()
        assert job == ("queued",)
        with pytest.raises(psycopg.IntegrityError):
            conn.execute(
                "INSERT INTO api_keys (client_id, name, key_hash, role)"
                " VALUES ('c', 'k', 'h', 'admin')"
            )
        conn.execute("DELETE FROM clients WHERE client_id = 'c'")  # cascades
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)  # the superadmin
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["sqlalchemy_url"] = sqlalchemy_url(scratch_dsn)
    command.downgrade(config, "0002")
    assert not TABLES & _tables(scratch_dsn)
    upgrade_database(scratch_dsn)
    assert _tables(scratch_dsn) >= TABLES
