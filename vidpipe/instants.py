"""Points in time as people type them on a command line: ISO 8601 or "that long ago"."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^(\d+)\s*([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_instant(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (naive = UTC, ``Z`` allowed) or a duration before ``now``: ``90m``,
    ``2h``, ``1d``. Returns an aware UTC datetime.

    Raises:
        ValueError: neither form.
    """
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r}: expected ISO 8601 or 90m/2h/1d") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
