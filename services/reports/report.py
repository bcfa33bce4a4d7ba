"""Hourly performance reports: Spark over MongoDB ``frame_metrics`` into ``performance_reports``.

One row per (client, camera, model name, model version, UTC hour of capture):

- ``frames``: frames captured in the hour; ``dropped``: those dropped before detection (they
  have no model, so they land in the row with ``model_name = model_version = ''``).
- ``effective_fps``: ``(frames - 1) / (last - first capture time in the hour, s)``: the rate
  at which this row's frames arrived while they arrived; NULL for fewer than 2 frames.
- ``{decoded,detected,rendered}_{p50,p95,p99}_ms``: capture -> hop latency, ms, from
  ``percentile_approx`` with accuracy ``A`` (settings, default 10 000). Spark's Greenwald-Khanna
  summary returns a value of the data whose rank is within ``frames / A`` of the exact rank
  ``ceil(q * frames)``: at 10 fps an hour has 36 000 frames, so at most 4 ranks off; under
  ``A`` frames the answer is exact (``numpy.percentile(..., method="inverted_cdf")``).
- ``mean_score``: mean detection score over all detections of the row (per-frame means
  weighted by per-frame detection counts); NULL when nothing was detected.
- ``detections_by_label``: label -> detections summed over the row's frames.

The window is widened to whole UTC hours; a run replaces the rows of every (client, camera,
hour) it has frames for (see :mod:`services.reports.report_sink`). Reads are parallel by
time slice (see :mod:`services.reports.report_sources`). Run it with ``vidpipe evaluate`` or
``spark-submit services/reports/__main__.py`` (see ``services/reports/cli.py``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from services.reports.report_sink import replace_window
from services.reports.report_sources import ReportWindow, read_metrics, resolve_window
from services.reports.settings import ReportSettings
from vidpipe.reports import ReportRow

log = logging.getLogger(__name__)

KEY = ("client_id", "camera_id", "model_name", "model_version", "hour_s")
HOPS = {"decoded": "decoded_ts_ns", "detected": "detected_ts_ns", "rendered": "rendered_ts_ns"}
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")


@dataclass(frozen=True)
class ReportRun:
    """What one run did: its rows, documents aggregated and skipped, rows replaced, time."""

    window: ReportWindow
    rows: list[ReportRow]
    documents: int
    skipped: int
    skipped_examples: list[str]
    rows_deleted: int
    elapsed_s: float


def _launched_by_spark_submit() -> bool:
    # Spark's PythonRunner hands its JVM to the driver through this variable.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(settings: ReportSettings) -> SparkSession:
    """The job's one SparkSession: UTC, no UI, WARN logging, few shuffle partitions.

    Outside spark-submit: master ``settings.spark_master``, the JDBC jar, executors on this
    interpreter (so they import vidpipe from the same venv), bound to loopback. Under
    spark-submit its ``--master``, ``--jars`` and PYSPARK_PYTHON apply.

    Raises:
        FileNotFoundError: the PostgreSQL JDBC jar is missing (``make system`` installs it).
    """
    builder = SparkSession.builder.appName("vidpipe-performance-report")
    if not _launched_by_spark_submit():
        if not settings.jdbc_jar.is_file():
            raise FileNotFoundError(
                f"PostgreSQL JDBC driver not found at {settings.jdbc_jar}: "
                "install Debian's libpostgresql-jdbc-java (make system)"
            )
        # Read by the JVM launcher and by SparkContext (python workers), not by SparkConf.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (
            builder.master(settings.spark_master)
            .config("spark.jars", str(settings.jdbc_jar))
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}")
        )
    # pyspark warns about pandas >= 3 on start-up; this job never converts to pandas.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    spark = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.sql.debug.maxToStringFields", "200")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _latency_ms(ts_column: str) -> Column:
    return (F.col(ts_column) - F.col("capture_ts_ns")) / F.lit(1e6)


def aggregate_metrics(docs: DataFrame, accuracy: int) -> DataFrame:
    """Per-key hourly report from :data:`~services.reports.report_sources.METRICS_SCHEMA`
    rows: the :class:`ReportRow` columns, with ``hour_s`` (s since epoch) for ``hour``."""
    frames = docs.select(
        *KEY,
        "capture_ts_ns",
        "dropped",
        "mean_score",
        "n_detections",
        *(_latency_ms(ts).alias(f"{hop}_ms") for hop, ts in HOPS.items()),
    )
    quantiles = list(QUANTILES.values())
    stats = frames.groupBy(*KEY).agg(
        F.count(F.lit(1)).alias("frames"),
        F.sum(F.col("dropped").cast("long")).alias("dropped"),
        F.min("capture_ts_ns").alias("first_ns"),
        F.max("capture_ts_ns").alias("last_ns"),
        F.sum(F.col("mean_score") * F.col("n_detections")).alias("score_sum"),
        F.sum(F.when(F.col("mean_score").isNotNull(), F.col("n_detections"))).alias("scored"),
        *(F.percentile_approx(f"{hop}_ms", quantiles, accuracy).alias(f"{hop}_q") for hop in HOPS),
    )
    labels = (
        docs.select(*KEY, F.explode("detections_by_label").alias("label", "n"))
        .groupBy(*KEY, "label")
        .agg(F.sum("n").alias("n"))
        .groupBy(*KEY)
        .agg(F.map_from_entries(F.collect_list(F.struct("label", "n"))).alias("labels"))
    )
    span_s = (F.col("last_ns") - F.col("first_ns")) / F.lit(1e9)
    no_labels = F.create_map().cast("map<string,bigint>")
    return stats.join(labels, on=list(KEY), how="left").select(
        *KEY,
        "frames",
        "dropped",
        F.when(span_s > 0, (F.col("frames") - 1) / span_s).alias("effective_fps"),
        *(
            F.col(f"{hop}_q")[i].alias(f"{hop}_{name}_ms")
            for hop in HOPS
            for i, name in enumerate(QUANTILES)
        ),
        F.when(F.col("scored") > 0, F.col("score_sum") / F.col("scored")).alias("mean_score"),
        F.coalesce("labels", no_labels).alias("detections_by_label"),
    )


def _report_row(values: dict[str, object]) -> ReportRow:
    hour_s = values.pop("hour_s")
    assert isinstance(hour_s, int)
    labels = values.pop("detections_by_label")
    assert isinstance(labels, dict)
    return ReportRow.model_validate(
        values
        | {
            "hour": datetime.fromtimestamp(hour_s, UTC),
            "detections_by_label": dict(sorted(labels.items())),
        }
    )


def report_window(spark: SparkSession, settings: ReportSettings, window: ReportWindow) -> ReportRun:
    """Read, aggregate and replace one window's rows using an existing session."""
    started = time.perf_counter()
    docs, skipped = read_metrics(
        spark, settings.mongo, window, settings.read_slice_minutes, settings.read_partitions
    )
    docs = docs.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        documents = docs.count()  # the one action that reads MongoDB (and fills `skipped`)
        if skipped.count.value:
            log.warning(
                "skipped malformed metrics documents",
                extra={"skipped": skipped.count.value, "examples": skipped.examples.value},
            )
        report = aggregate_metrics(docs, settings.percentile_accuracy).persist()
        try:
            rows = [_report_row(r.asDict()) for r in report.orderBy(*KEY).collect()]
            deleted = 0
            if rows:
                deleted, _ = replace_window(report, settings.postgres, window)
        finally:
            report.unpersist()
    finally:
        docs.unpersist()
    run = ReportRun(
        window=window,
        rows=rows,
        documents=documents,
        skipped=skipped.count.value,
        skipped_examples=list(skipped.examples.value),
        rows_deleted=deleted,
        elapsed_s=time.perf_counter() - started,
    )
    log.info(
        "performance report done",
        extra={
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "documents": documents,
            "skipped": run.skipped,
            "rows": len(rows),
            "elapsed_s": round(run.elapsed_s, 2),
        },
    )
    return run


def generate_report(
    settings: ReportSettings,
    since: datetime | None,
    until: datetime | None,
    *,
    spark: SparkSession | None = None,
) -> ReportRun:
    """Run the report for ``[since, until)`` (default: the last ``report_window_hours`` up to
    now; naive datetimes are UTC), widened to whole UTC hours.

    ``spark``: an existing session to use (left running); otherwise one is built for this
    run and stopped afterwards.

    Raises:
        ValueError: ``since`` is not before ``until``.
        FileNotFoundError: no JDBC jar. pymongo/psycopg/Spark errors propagate unchanged.
    """
    window = resolve_window(since, until, datetime.now(UTC), settings.report_window_hours)
    if spark is not None:
        return report_window(spark, settings, window)
    session = build_session(settings)
    try:
        return report_window(session, settings, window)
    finally:
        session.stop()


def run_report(
    settings: ReportSettings,
    since: datetime | None,
    until: datetime | None,
    *,
    spark: SparkSession | None = None,
) -> list[ReportRow]:
    """:func:`generate_report`, returning only the rows (ordered by key and hour)."""
    return generate_report(settings, since, until, spark=spark).rows
