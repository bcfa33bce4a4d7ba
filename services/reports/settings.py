"""Evaluator knobs (env prefix ``VIDPIPE_``, e.g. ``VIDPIPE_SPARK_MASTER=local[4]``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from vidpipe.settings import ServiceSettings


class ReportSettings(ServiceSettings):
    spark_master: str = Field(
        default="local[2]",
        description="used unless the job was launched by spark-submit, whose --master wins",
    )
    jdbc_jar: Path = Field(
        default=Path("/usr/share/java/postgresql.jar"),
        description="PostgreSQL JDBC driver (Debian package libpostgresql-jdbc-java)",
    )
    report_window_hours: int = Field(
        default=24, ge=1, description="default window when --since is not given"
    )
    # an hour: one slice per report bucket. Each slice is one range query; on MongoDB it is an
    # index range scan, but the local stand-in scans the collection per query, so shorter
    # slices multiplied a day's window (144 x 10 min) into minutes of scanning
    read_slice_minutes: int = Field(
        default=60, ge=1, description="MongoDB is read in capture-time slices of this length"
    )
    read_partitions: int = Field(
        default=4, ge=1, description="Spark partitions (concurrent MongoDB readers) over slices"
    )
    shuffle_partitions: int = Field(default=4, ge=1, description="spark.sql.shuffle.partitions")
    percentile_accuracy: int = Field(
        default=10_000,
        ge=100,
        description="percentile_approx accuracy: rank error at most frames/accuracy",
    )
