"""``python -m infra.local.serve_events PATH``: supervisord event listener that counts restarts.

supervisord has no restart counter, so this listener (``[eventlistener:serve-events]`` in
the generated configuration) counts per program the events that precede an automatic
restart: ``PROCESS_STATE_EXITED`` (a RUNNING program died; ``autorestart`` starts it again)
and ``PROCESS_STATE_BACKOFF`` (a start failed before ``startsecs``; retried after a
backoff). It writes ``{"program": count, ...}`` to ``PATH`` atomically after each event and
reads it back at start, so a restarted listener keeps counting. Stdout is the protocol
channel; logs go to stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from supervisor import childutils

from vidpipe.logs import configure_logging

log = logging.getLogger("infra.local.serve_events")

COUNTED = frozenset({"PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF"})


def load(path: Path) -> dict[str, int]:
    """Counts written earlier (empty when absent or unreadable)."""
    try:
        loaded = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): int(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def save(path: Path, counts: Mapping[str, int]) -> None:
    """Replace ``path`` atomically (readers never see half a file)."""
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(dict(sorted(counts.items()))) + "\n")
    partial.replace(path)


def count(counts: dict[str, int], event: str, payload: str) -> str | None:
    """Add one event to ``counts``; returns the program counted, or None if not counted.
    ``payload`` is supervisord's ``processname:NAME groupname:G from_state:S ...`` line."""
    if event not in COUNTED:
        return None
    fields = dict(token.split(":", 1) for token in payload.split() if ":" in token)
    name = fields.get("processname")
    if not name:
        return None
    counts[name] = counts.get(name, 0) + 1
    return name


def listen(path: Path, stdin: TextIO, stdout: TextIO) -> None:
    """Serve the listener protocol until supervisord closes stdin."""
    counts = load(path)
    while True:
        childutils.listener.ready(stdout)
        line = stdin.readline()
        if not line:
            return
        headers = childutils.get_headers(line)
        payload = stdin.read(int(headers["len"]))
        event = headers.get("eventname", "")
        name = count(counts, event, payload.split("\n", 1)[0])
        if name is not None:
            save(path, counts)
            log.info("%s: %s (restarts %d)", name, event, counts[name])
        childutils.listener.ok(stdout)


def main() -> None:
    configure_logging()
    listen(Path(sys.argv[1]), sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
