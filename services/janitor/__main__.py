"""``vidpipe run janitor [--dry-run]`` (or ``python -m services.janitor [--dry-run]``): one
retention sweep, then exit; hourly as a Kubernetes CronJob (deploy/k8s/base/janitor.yaml)
and under `vidpipe serve`.

Reads every client's retention from Postgres, deletes its objects older than that in the
frames, annotations, renders and requests buckets (S3 ``LastModified``) and its frame-metrics
documents (MongoDB, by capture time), logs counts per client and bucket and one summary line.
Exits 1 when any client failed (the others are still swept), 0 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime

from services.janitor.service import Janitor, JanitorReport
from services.janitor.settings import JanitorSettings
from vidpipe.db import create_engine
from vidpipe.logs import configure_logging
from vidpipe.metricsstore import MetricsStore
from vidpipe.objectstore import ObjectStore
from vidpipe.retention import read_retentions

log = logging.getLogger("services.janitor")


def sweep(settings: JanitorSettings, now: datetime | None = None) -> JanitorReport:
    """One run as of ``now`` (default: the current time, UTC); logs and returns the report.

    Raises:
        sqlalchemy.exc.OperationalError: Postgres unreachable (nothing is deleted then).
    """
    now = now or datetime.now(UTC)
    engine = create_engine(settings.postgres, pool_size=1)
    try:
        with engine.connect() as conn:
            retentions = read_retentions(conn, settings.retention)
    finally:
        engine.dispose()
    metrics = MetricsStore(settings.mongo) if settings.metrics else None
    try:
        janitor = Janitor(
            ObjectStore(settings.s3, max_connections=4),
            metrics,
            dry_run=settings.dry_run,
            progress_every=settings.progress_every,
        )
        log.info(
            "janitor started",
            extra={
                "clients": len(retentions),
                "default_days": settings.retention.default_days,
                "dry_run": settings.dry_run,
                "now": now.isoformat(),
            },
        )
        report = janitor.run(retentions, now)
    finally:
        if metrics is not None:
            metrics.close()
    log.info(report.summary())
    return report


def main(settings: JanitorSettings | None = None) -> None:
    """Run once; exits with status 1 when a client's sweep failed."""
    settings = settings or JanitorSettings()
    configure_logging(settings.log_level)
    report = sweep(settings)
    if report.failed:
        log.error("janitor: clients failed: %s", ", ".join(report.failed))
        sys.exit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m services.janitor", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    args = parser.parse_args()
    main(JanitorSettings(dry_run=True) if args.dry_run else JanitorSettings())
