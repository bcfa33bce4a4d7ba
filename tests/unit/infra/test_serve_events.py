"""The restart counter of `vidpipe serve` (supervisord event listener)."""

from __future__ import annotations

import io
from pathlib import Path

from infra.local.serve_events import count, listen, load

EXITED = "processname:renderer groupname:renderer from_state:RUNNING expected:0 pid:42"


def _event(name: str, payload: str) -> str:
    header = "ver:3.0 server:supervisor serial:1 pool:serve-events poolserial:1 "
    return f"{header}eventname:{name} len:{len(payload)}\n{payload}"


def test_count_when_exit_or_backoff_then_counted_else_not() -> None:
    counts: dict[str, int] = {}
    assert count(counts, "PROCESS_STATE_EXITED", EXITED) == "renderer"
    backoff = "processname:detector-1 groupname:detector-1 from_state:STARTING tries:1"
    assert count(counts, "PROCESS_STATE_BACKOFF", backoff) == "detector-1"
    assert count(counts, "PROCESS_STATE_STOPPED", EXITED) is None
    assert counts == {"renderer": 1, "detector-1": 1}


def test_listen_when_events_arrive_then_counts_persist_across_listener_restarts(
    tmp_path: Path,
) -> None:
    # given a counts file from an earlier listener
    path = tmp_path / "restarts.json"
    path.write_text('{"renderer": 2}\n')
    stdin = io.StringIO(_event("PROCESS_STATE_EXITED", EXITED))
    stdout = io.StringIO()
    # when a listener handles one more exit, then supervisord closes its stdin
    listen(path, stdin, stdout)
    # then the count went on from the file, and the event was acknowledged
    assert load(path) == {"renderer": 3}
    assert stdout.getvalue().startswith("READY\nRESULT 2\nOKREADY\n")
