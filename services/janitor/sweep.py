"""Expire the objects under one prefix: list page by page, delete in DeleteObjects batches.

Deleting while the listing goes on is safe: ``list_objects_v2`` continues after the last
key it returned, and only keys already returned are deleted. Objects are judged by their
``LastModified`` alone, so the sweep does not depend on the key layout under the prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from vidpipe.objectstore import DELETE_BATCH, StoredObject
from vidpipe.retention import is_expired

log = logging.getLogger(__name__)


class Objects(Protocol):
    """What the sweep needs of :class:`vidpipe.objectstore.ObjectStore`."""

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterable[StoredObject]: ...

    def delete_keys(self, bucket: str, keys: Sequence[str]) -> int: ...


@dataclass(frozen=True)
class SweepResult:
    """``listed`` objects under the prefix, of which ``expired`` were (or, in a dry run,
    would have been) deleted, ``bytes`` their total size."""

    listed: int
    expired: int
    bytes: int


def expire_prefix(
    store: Objects,
    bucket: str,
    prefix: str,
    limit: datetime,
    *,
    dry_run: bool = False,
    batch: int = DELETE_BATCH,
    progress_every: int = 10_000,
) -> SweepResult:
    """Delete every object under ``bucket/prefix`` last modified before ``limit`` (aware).

    Raises:
        vidpipe.objectstore.DeleteFailed: the server refused some deletions.
        botocore.exceptions.ClientError: listing or deleting failed.
    """
    listed = expired = size = 0
    pending: list[str] = []

    def flush() -> None:
        if pending and not dry_run:
            store.delete_keys(bucket, pending)
        pending.clear()

    for item in store.iter_objects(bucket, prefix):
        listed += 1
        if is_expired(item.last_modified, limit):
            expired += 1
            size += item.size
            pending.append(item.key)
            if len(pending) >= batch:
                flush()
        if listed % progress_every == 0:
            log.info(
                "sweeping",
                extra={"bucket": bucket, "prefix": prefix, "listed": listed, "expired": expired},
            )
    flush()
    return SweepResult(listed, expired, size)
