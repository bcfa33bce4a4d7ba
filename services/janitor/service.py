"""One janitor run: for each client, expire its objects in every bucket and its frame
metrics, each by the client's retention. A client that fails is logged and counted; the
others are still swept."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.janitor.sweep import Objects, expire_prefix
from vidpipe.keys import client_prefix, requests_prefix
from vidpipe.retention import ClientRetention, cutoff, epoch_ns
from vidpipe.topics import ANNOTATIONS_BUCKET, FRAMES_BUCKET, RENDERS_BUCKET, REQUESTS_BUCKET

log = logging.getLogger(__name__)

#: The buckets swept, each with the prefix of one client's objects in it.
SWEPT = (
    (FRAMES_BUCKET, client_prefix),
    (ANNOTATIONS_BUCKET, client_prefix),
    (RENDERS_BUCKET, client_prefix),  # clips included: they lie under each camera's prefix
    (REQUESTS_BUCKET, requests_prefix),
)
#: The name frame-metrics deletions are counted under.
METRICS = "metrics"


class FrameMetrics(Protocol):
    """What the janitor needs of :class:`vidpipe.metricsstore.MetricsStore`."""

    def delete_captured_before(self, client_id: str, before_ns: int) -> int: ...

    def count_captured_before(self, client_id: str, before_ns: int) -> int: ...


@dataclass
class JanitorReport:
    """What one run deleted (or would have, ``dry_run``): counts per client and per bucket
    (frame-metrics documents under :data:`METRICS`), and the clients that failed."""

    dry_run: bool
    #: whether frame metrics were swept (then counted under :data:`METRICS`, 0 included)
    metrics: bool = False
    by_client: dict[str, Counter[str]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def totals(self) -> Counter[str]:
        """Deletions per bucket (and :data:`METRICS`) over every client."""
        total: Counter[str] = Counter({bucket: 0 for bucket, _ in SWEPT})
        if self.metrics:
            total[METRICS] = 0
        for counts in self.by_client.values():
            total.update(counts)
        return total

    def summary(self) -> str:
        """One line: ``janitor deleted frames=3 annotations=3 ... clients=2 failed=0 ...``."""
        verb = "would delete" if self.dry_run else "deleted"
        counts = " ".join(f"{k}={v}" for k, v in self.totals.items())
        return (
            f"janitor {verb} {counts} clients={len(self.by_client)}"
            f" failed={len(self.failed)} in {self.seconds:.1f} s"
        )


class Janitor:
    """Expires clients' data in the object store and (optionally) MongoDB."""

    def __init__(
        self,
        objects: Objects,
        metrics: FrameMetrics | None,
        *,
        dry_run: bool = False,
        progress_every: int = 10_000,
    ) -> None:
        self._objects = objects
        self._metrics = metrics
        self._dry_run = dry_run
        self._progress_every = progress_every

    def run(self, retentions: Sequence[ClientRetention], now: datetime) -> JanitorReport:
        """Sweep every client in ``retentions`` as of ``now`` (aware); never raises for one
        client's failure (it is logged with its traceback and listed in ``failed``)."""
        started = time.monotonic()
        report = JanitorReport(dry_run=self._dry_run, metrics=self._metrics is not None)
        for retention in retentions:
            try:
                report.by_client[retention.client_id] = self.sweep_client(retention, now)
            except Exception:
                log.exception("client sweep failed", extra={"client_id": retention.client_id})
                report.failed.append(retention.client_id)
        report.seconds = time.monotonic() - started
        return report

    def sweep_client(self, retention: ClientRetention, now: datetime) -> Counter[str]:
        """Expire one client's data; returns deletions per bucket and :data:`METRICS`."""
        limit = cutoff(now, retention.days)
        counts: Counter[str] = Counter()
        for bucket, prefix_of in SWEPT:
            result = expire_prefix(
                self._objects,
                bucket,
                prefix_of(retention.client_id),
                limit,
                dry_run=self._dry_run,
                progress_every=self._progress_every,
            )
            counts[bucket] = result.expired
            if result.expired:
                log.info(
                    "expired objects",
                    extra={
                        "client_id": retention.client_id,
                        "bucket": bucket,
                        "expired": result.expired,
                        "listed": result.listed,
                        "bytes": result.bytes,
                        "dry_run": self._dry_run,
                    },
                )
        if self._metrics is not None:
            before_ns = epoch_ns(limit)
            if self._dry_run:
                counts[METRICS] = self._metrics.count_captured_before(
                    retention.client_id, before_ns
                )
            else:
                counts[METRICS] = self._metrics.delete_captured_before(
                    retention.client_id, before_ns
                )
        log.info(
            "client swept",
            extra={
                "client_id": retention.client_id,
                "retention_days": retention.days,
                "cutoff": limit.isoformat(),
                **{k.replace(".", "_"): v for k, v in counts.items()},
            },
        )
        return counts
