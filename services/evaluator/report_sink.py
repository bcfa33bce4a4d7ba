"""Hourly report rows into Postgres ``performance_reports``: JDBC into staging, then one swap.

Idempotence: re-running a window replaces its rows instead of duplicating them. Spark appends
the rows over JDBC into a fresh per-run staging table; then one psycopg transaction, holding
an advisory lock so concurrent runs cannot interleave, deletes the rows of every
(client, camera, hour) cell the staging table has and inserts the staging rows. The window is
whole UTC hours (see :func:`~services.evaluator.report_sources.resolve_window`), so each cell
is recomputed from all of its frames and a (model, version) row that no longer has frames in
it disappears. Cells without any frames in MongoDB (metrics expired, or rows that some other
writer owns) are left alone, so an empty window deletes nothing. The staging table is dropped
afterwards, also when the swap fails.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from services.evaluator.report_sources import ReportWindow

log = logging.getLogger(__name__)

TABLE = "performance_reports"
JDBC_DRIVER = "org.postgresql.Driver"
#: Serializes report swaps (pg_advisory_xact_lock key).
_LOCK_KEY = 0x76_69_64_70_72_65_70  # "vidprep"
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


#: Report columns other than the key's hour, in table order (``hour_s`` is converted).
_COLUMNS = (
    "client_id",
    "camera_id",
    "model_name",
    "model_version",
    "frames",
    "dropped",
    "effective_fps",
    *(
        f"{hop}_{q}_ms"
        for hop in ("decoded", "detected", "rendered")
        for q in ("p50", "p95", "p99")
    ),
    "mean_score",
)


def _write_staging(report: DataFrame, target: JdbcTarget, staging: str) -> None:
    """JDBC-append the report into a new table named ``staging`` (Spark creates it)."""
    frame = report.select(
        *_COLUMNS, "hour_s", F.to_json("detections_by_label").alias("detections_by_label")
    )
    options = target.properties | {"batchsize": "1000"}
    frame.write.jdbc(target.url, staging, mode="errorifexists", properties=options)


def _swap(conn: psycopg.Connection, window: ReportWindow, staging: str) -> tuple[int, int]:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    deleted = conn.execute(
        sql.SQL(
            "DELETE FROM {table} AS r USING (SELECT DISTINCT client_id, camera_id, hour_s "
            "FROM {staging}) AS s WHERE r.hour >= %s AND r.hour < %s "
            "AND r.client_id = s.client_id AND r.camera_id = s.camera_id "
            "AND r.hour = to_timestamp(s.hour_s)"
        ).format(table=sql.Identifier(TABLE), staging=sql.Identifier(staging)),
        (window.start, window.end),
    ).rowcount
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS)
    inserted = conn.execute(
        sql.SQL(
            "INSERT INTO {table} ({columns}, hour, detections_by_label) "
            "SELECT {columns}, to_timestamp(hour_s), detections_by_label::jsonb FROM {staging}"
        ).format(table=sql.Identifier(TABLE), columns=columns, staging=sql.Identifier(staging))
    ).rowcount
    return deleted, inserted


def replace_window(report: DataFrame, dsn: str, window: ReportWindow) -> tuple[int, int]:
    """Replace the ``performance_reports`` rows of every (client, camera, hour) cell in
    ``report`` (columns of :func:`~services.evaluator.report.aggregate_metrics`, all hours
    inside ``window``) by ``report``'s rows. Returns (rows deleted, rows inserted).

    Raises:
        psycopg.Error, pyspark errors: Postgres or JDBC failures; the previous rows are then
        left as they were.
    """
    staging = f"{TABLE}_staging_{uuid.uuid4().hex[:12]}"
    try:
        _write_staging(report, jdbc_target(dsn), staging)
        with psycopg.connect(dsn) as conn:  # one transaction, committed on leaving the block
            deleted, inserted = _swap(conn, window, staging)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(staging)))
    log.info(
        "performance reports replaced",
        extra={"window_start": window.start.isoformat(), "deleted": deleted, "inserted": inserted},
    )
    return deleted, inserted
