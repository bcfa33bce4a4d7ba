"""Hourly report rows into Postgres ``performance_reports``: JDBC into staging, then one swap.

Idempotence: re-running a window replaces its rows instead of duplicating them. Spark appends
the rows over JDBC into a fresh per-run staging table; then one transaction
(:func:`vidpipe.reports.replace_report_cells`, holding an advisory lock so concurrent runs
cannot interleave) deletes the rows of every (client, camera, hour) cell the staging table
has and inserts the staging rows. The window is
whole UTC hours (see :func:`~services.reports.report_sources.resolve_window`), so each cell
is recomputed from all of its frames and a (model, version) row that no longer has frames in
it disappears. Cells without any frames in MongoDB (metrics expired, or rows that some other
writer owns) are left alone, so an empty window deletes nothing. The staging table is dropped
afterwards, also when the swap fails.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from psycopg.conninfo import conninfo_to_dict
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from services.reports.report_sources import ReportWindow
from vidpipe.db import create_engine
from vidpipe.reports import REPORT_COLUMNS, drop_staging, replace_report_cells
from vidpipe.settings import PostgresSettings

log = logging.getLogger(__name__)

TABLE = "performance_reports"
JDBC_DRIVER = "org.postgresql.Driver"
_FORWARDED_PARAMS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "application_name")


@dataclass(frozen=True)
class JdbcTarget:
    """A JDBC URL plus connection properties; the password stays out of the URL and repr."""

    url: str
    properties: dict[str, str] = field(repr=False)


def jdbc_target(dsn: str) -> JdbcTarget:
    """A libpq DSN (URL or ``key=value``) as a pgjdbc URL and properties.

    ``postgresql://postgres@127.0.0.1:5432/vidpipe`` becomes
    ``jdbc:postgresql://127.0.0.1:5432/vidpipe`` with ``user=postgres``; ``password``, TLS
    settings and ``application_name`` go into the properties. Several hosts (``h1,h2``) are
    kept in order; a missing host means localhost, a missing port 5432.

    Raises:
        ValueError: no database name, or a Unix-socket host (JDBC speaks TCP only).
    """
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    dbname = params.get("dbname")
    if not dbname:
        raise ValueError("the Postgres DSN names no database")
    hosts = params.get("host", "localhost").split(",")
    ports = params.get("port", "5432").split(",")
    if len(ports) == 1:
        ports *= len(hosts)
    if len(ports) != len(hosts):
        raise ValueError("the Postgres DSN has a different number of hosts and ports")
    addresses = []
    for host, port in zip(hosts, ports, strict=True):
        if host.startswith("/"):
            raise ValueError(f"JDBC cannot use the Unix socket {host}; give a TCP host")
        addresses.append(f"[{host}]:{port or 5432}" if ":" in host else f"{host}:{port or 5432}")
    properties = {"driver": JDBC_DRIVER}
    for name in ("user", "password", *_FORWARDED_PARAMS):
        if params.get(name):
            properties[name if name != "application_name" else "ApplicationName"] = params[name]
    return JdbcTarget(f"jdbc:postgresql://{','.join(addresses)}/{dbname}", properties)


def _write_staging(report: DataFrame, target: JdbcTarget, staging: str) -> None:
    """JDBC-append the report into a new table named ``staging`` (Spark creates it)."""
    frame = report.select(
        *REPORT_COLUMNS, "hour_s", F.to_json("detections_by_label").alias("detections_by_label")
    )
    options = target.properties | {"batchsize": "1000"}
    frame.write.jdbc(target.url, staging, mode="errorifexists", properties=options)


def replace_window(
    report: DataFrame, postgres: PostgresSettings, window: ReportWindow
) -> tuple[int, int]:
    """Replace the ``performance_reports`` rows of every (client, camera, hour) cell in
    ``report`` (columns of :func:`~services.reports.report.aggregate_metrics`, all hours
    inside ``window``) by ``report``'s rows. Returns (rows deleted, rows inserted).

    Raises:
        sqlalchemy/psycopg errors, pyspark errors: Postgres or JDBC failures; the previous
        rows are then left as they were.
    """
    staging = f"{TABLE}_staging_{uuid.uuid4().hex[:12]}"
    engine = create_engine(postgres, pool_size=1)
    try:
        _write_staging(report, jdbc_target(postgres.dsn.get_secret_value()), staging)
        with engine.begin() as conn:
            deleted, inserted = replace_report_cells(conn, staging, window.start, window.end)
    finally:
        with engine.begin() as conn:
            drop_staging(conn, staging)
        engine.dispose()
    log.info(
        "performance reports replaced",
        extra={"window_start": window.start.isoformat(), "deleted": deleted, "inserted": inserted},
    )
    return deleted, inserted
