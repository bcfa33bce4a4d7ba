"""One schema source: a database migrated to alembic's head equals :data:`vidpipe.db.metadata`
(alembic's autogenerate comparison), and a table drifting from it is caught."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from infra.local.provision import sqlalchemy_url, upgrade_database
from vidpipe.db import metadata

pytestmark = pytest.mark.integration


def _differences(dsn: str, target: sa.MetaData) -> list[Any]:
    engine = sa.create_engine(sqlalchemy_url(dsn))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, target))
    finally:
        engine.dispose()


def test_schema_when_migrated_to_head_then_equals_the_metadata(scratch_dsn: str) -> None:
    upgrade_database(scratch_dsn)
    assert _differences(scratch_dsn, metadata) == []


def test_schema_when_a_table_drifts_then_the_comparison_names_it(scratch_dsn: str) -> None:
    # given the migrated database, and the code's tables with one column no migration adds
    upgrade_database(scratch_dsn)
    drifted = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["training_jobs"].append_column(sa.Column("priority", sa.Integer()))
    # when compared / then exactly that column is reported, on that table
    found = _differences(scratch_dsn, drifted)
    assert [(d[0], d[2], d[3].name) for d in found] == [("add_column", "training_jobs", "priority")]
