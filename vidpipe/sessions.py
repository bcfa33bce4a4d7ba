"""Stream sessions: every start of a camera's decoder opens a new session, so a restart
never overwrites or merges an earlier run's frames (frame identity is camera, session, seq).

A session id is the start time in UTC to the second plus 4 random hex digits,
``20261201t133012-9c1e``: it follows :data:`vidpipe.ids.ID_RULE`, sorts by start time as a
string, and two starts in the same second still differ.
"""

from __future__ import annotations

import secrets
import time

SESSION_PATTERN = r"^[0-9]{8}t[0-9]{6}-[0-9a-f]{4}$"


def new_session_id(now_ns: int | None = None) -> str:
    """A fresh session id for a stream starting at ``now_ns`` (ns since epoch; default now)."""
    seconds = (now_ns or time.time_ns()) // 1_000_000_000
    stamp = time.strftime("%Y%m%dt%H%M%S", time.gmtime(seconds))
    return f"{stamp}-{secrets.token_hex(2)}"
