"""Process-wide logging set-up: call :func:`configure_logging` once, in ``__main__``.

Structured fields go in ``extra={...}`` (camera_id, frame_id, model_version, ...); the
formatter appends every extra field as ``key=value`` so logs stay grep-able.
"""

from __future__ import annotations

import logging
import sys

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _quiet_py4j(record: logging.LogRecord) -> bool:
    """Drop py4j's INFO tracebacks (it logs on the root logger when Spark's JVM closes)."""
    return record.levelno >= logging.WARNING or "py4j" not in record.pathname


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
        if not extras:
            return base
        return base + " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))


def configure_logging(level: str = "INFO") -> None:
    """Send all logs to stderr with timestamps; quiet chatty client libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(_quiet_py4j)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    noisy_libraries = ("aiokafka", "botocore", "urllib3", "kafka", "mlflow", "alembic", "pymongo")
    for noisy in (*noisy_libraries, "py4j"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
