"""How long a client's data is kept: the rule the janitor enforces and the dashboard shows.

A client's ``retention_days`` (``clients`` table) wins; NULL means the platform default
(:class:`vidpipe.settings.RetentionSettings`). An object (or frame-metrics document) is
expired when its time (S3 ``LastModified``, ``capture_ts_ns``) is strictly before
:func:`cutoff`: ``now - days``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from vidpipe.db import clients
from vidpipe.settings import RetentionSettings

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ClientRetention:
    """``days`` a client's data is kept; ``own``: set on the client, not the default."""

    client_id: str
    days: int
    own: bool


def effective_days(own_days: int | None, settings: RetentionSettings) -> int:
    """The client's own retention in days, or the platform default when it has none."""
    return settings.default_days if own_days is None else own_days


def cutoff(now: datetime, days: int) -> datetime:
    """The aware UTC instant before which data of a ``days``-day retention is expired.

    Raises:
        ValueError: ``days`` < 1, or a naive ``now`` (an ambiguous clock).
    """
    if days < 1:
        raise ValueError(f"retention must be at least one day, not {days}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC) - timedelta(days=days)


def epoch_ns(moment: datetime) -> int:
    """``moment`` (aware) as ns since the Unix epoch, exactly (no float rounding)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def is_expired(moment: datetime, limit: datetime) -> bool:
    """Whether data stamped ``moment`` (aware) is past ``limit`` (from :func:`cutoff`)."""
    return moment < limit


def read_retentions(conn: sa.Connection, settings: RetentionSettings) -> list[ClientRetention]:
    """Every client's effective retention, ordered by client id."""
    rows = conn.execute(
        sa.select(clients.c.client_id, clients.c.retention_days).order_by(clients.c.client_id)
    )
    return [
        ClientRetention(
            r.client_id,
            effective_days(r.retention_days, settings),
            own=r.retention_days is not None,
        )
        for r in rows
    ]
