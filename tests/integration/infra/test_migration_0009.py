"""Migration 0009 on a scratch database: ``clients.retention_days`` (positive or NULL) in,
``client_configs.sampling_fps`` out; downgrade restores it; upgrade again."""

from __future__ import annotations

import psycopg
import pytest
from alembic import command
from alembic.config import Config

from infra.local.provision import MIGRATIONS_DIR, sqlalchemy_url, upgrade_database

pytestmark = pytest.mark.integration


def _columns(dsn: str, table: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
        )
        return {r[0] for r in rows}


def test_migration_0009_when_upgraded_and_downgraded_then_schema_follows(scratch_dsn: str) -> None:
    # given the schema at head
    upgrade_database(scratch_dsn)
    assert "retention_days" in _columns(scratch_dsn, "clients")
    assert "sampling_fps" not in _columns(scratch_dsn, "client_configs")
    with psycopg.connect(scratch_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO clients (client_id, name) VALUES ('d', 'd')")
        conn.execute("INSERT INTO clients (client_id, name, retention_days) VALUES ('k', 'k', 7)")
        for bad in (0, -3):
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute("UPDATE clients SET retention_days = %s WHERE client_id = 'k'", (bad,))
        rows = conn.execute("SELECT client_id, retention_days FROM clients ORDER BY 1").fetchall()
        assert rows == [("d", None), ("k", 7)]
    # when downgraded one step
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["sqlalchemy_url"] = sqlalchemy_url(scratch_dsn)
    command.downgrade(config, "0008")
    # then sampling_fps is back (and still checked), retention_days gone, rows kept
    assert "retention_days" not in _columns(scratch_dsn, "clients")
    assert "sampling_fps" in _columns(scratch_dsn, "client_configs")
    with psycopg.connect(scratch_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO client_configs (client_id, model_name, model_alias, sampling_fps)"
                " VALUES ('k', 'm', 'production', 0)"
            )
        assert conn.execute("SELECT count(*) FROM clients").fetchone() == (2,)
    # and upgrading again works
    upgrade_database(scratch_dsn)
    assert "retention_days" in _columns(scratch_dsn, "clients")
