"""``python -m infra.local.cron --schedule "5 * * * *" [--timeout-s 3000] -- COMMAND...``

The one-host stand-in for a Kubernetes CronJob: runs COMMAND at each time the cron
expression (``croniter``, UTC) names, one run at a time (a run that overlaps the next slot
makes that slot be skipped, as ``concurrencyPolicy: Forbid``), killing a run that exceeds
``--timeout-s`` (``activeDeadlineSeconds``). A failed run is logged with its exit code and
the schedule goes on. SIGTERM stops the waiting, or SIGTERMs the running command and waits
for it. Under `vidpipe serve` the report job runs this way with the CronJob's schedule.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType

from croniter import croniter

from vidpipe.logs import configure_logging

log = logging.getLogger("infra.local.cron")


def next_run(schedule: str, after: datetime) -> datetime:
    """The first time ``schedule`` (5-field cron, UTC) names strictly after ``after``.

    Raises:
        ValueError: a malformed expression.
    """
    if not croniter.is_valid(schedule):
        raise ValueError(f"not a cron expression: {schedule!r}")
    return croniter(schedule, after).get_next(datetime)


def run_once(command: Sequence[str], timeout_s: float, stop: threading.Event) -> int | None:
    """Run ``command`` to its end; returns its exit code, or None if stopped or timed out."""
    log.info("run: %s", " ".join(command))
    child = subprocess.Popen(list(command), stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    code = child.poll()
    while code is None and not stop.wait(0.5):
        code = child.poll()
        if code is None and time.monotonic() > deadline:
            log.error("run exceeded %.0f s; stopping it", timeout_s)
            break
    if code is None:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return code


def run_schedule(
    schedule: str, command: Sequence[str], timeout_s: float, stop: threading.Event
) -> None:
    """Run ``command`` at each slot of ``schedule`` until ``stop`` is set."""
    due = next_run(schedule, datetime.now(UTC))
    log.info("scheduled %r; next run %s", schedule, due.isoformat())
    while not stop.is_set():
        # short waits: the stop flag is set by a signal handler on this same thread
        if datetime.now(UTC) < due:
            stop.wait(min(1.0, (due - datetime.now(UTC)).total_seconds()))
            continue
        code = run_once(command, timeout_s, stop)
        if code == 0:
            log.info("run finished")
        elif code is not None:
            log.error("run failed with exit code %d", code)
        due = next_run(schedule, datetime.now(UTC))
        log.info("next run %s", due.isoformat())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.cron", description=__doc__)
    parser.add_argument("--schedule", required=True, help="5-field cron expression, UTC")
    parser.add_argument("--timeout-s", type=float, default=3000.0, help="longest run")
    parser.add_argument("command", nargs="+", help="what to run (after --)")
    args = parser.parse_args(argv)
    configure_logging()
    next_run(args.schedule, datetime.now(UTC))  # fail at start-up on a bad expression
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    run_schedule(args.schedule, args.command, args.timeout_s, stop)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
