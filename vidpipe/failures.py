"""What a failure means for the message that met it: retry it, dead-letter it, or both in turn.

Three kinds (:func:`classify`):

- ``transient``: a dependency (S3, Kafka, Postgres, Redis, MLflow, Mongo) is unreachable or
  timed out. Retrying will work once it is back, so the message is retried with capped
  backoff for as long as it takes and is never dead-lettered.
- ``bad_input``: the message itself cannot be handled (:class:`BadInput`: NaN scores, a label
  id the model does not have, a stored config that does not validate). Retrying changes
  nothing: dead-letter it once, with its reason, and go on.
- ``unexpected``: anything else. Retried a bounded number of times, then dead-lettered with
  the exception, so a deterministic bug cannot become a crash loop that blocks partitions.

An exception is transient when it, or any exception in its ``__cause__``/``__context__``
chain, is a :class:`TransientError` or one of the client libraries' connection and timeout
errors; a :class:`BadInput` anywhere in the chain wins over that (the input stays bad).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Literal

import botocore.exceptions
import psycopg
import pymongo.errors
import redis.exceptions
import sqlalchemy.exc
from aiokafka.errors import KafkaError

Kind = Literal["transient", "bad_input", "unexpected"]


class TransientError(RuntimeError):
    """A dependency is unreachable or timing out; the same work will succeed later."""


class BadInput(ValueError):
    """The message cannot be handled, whatever the retries: dead-letter it with
    ``error_type`` (a short snake_case tag) and ``str(self)`` as the reason."""

    def __init__(self, reason: str, error_type: str) -> None:
        super().__init__(reason)
        self.error_type = error_type


#: Connection and timeout errors of the clients vidpipe uses (each a subclass tree).
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TransientError,
    TimeoutError,  # asyncio.TimeoutError and socket.timeout are aliases since 3.11
    ConnectionError,  # refused, reset, aborted, broken pipe
    socket.gaierror,
    botocore.exceptions.ConnectionError,  # endpoint unreachable, connect/read timeouts
    botocore.exceptions.HTTPClientError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,  # server gone, connection refused, statement timeout
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # pool exhausted (connections stuck on a frozen server)
    psycopg.OperationalError,
    pymongo.errors.AutoReconnect,  # includes NetworkTimeout
    pymongo.errors.ConnectionFailure,  # includes ServerSelectionTimeoutError
    pymongo.errors.ExecutionTimeout,
)
#: S3 error codes that say "later", not "never".
_TRANSIENT_S3_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or during (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` itself (not its chain) is a dependency being unreachable or slow."""
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in _TRANSIENT_S3_CODES or int(status or 0) >= 500
    return False


def classify(exc: BaseException) -> Kind:
    """The kind of failure ``exc`` is (see the module doc)."""
    chain = list(_chain(exc))
    if any(isinstance(e, BadInput) for e in chain):
        return "bad_input"
    if any(is_transient(e) for e in chain):
        return "transient"
    return "unexpected"


def bad_input_of(exc: BaseException) -> BadInput | None:
    """The :class:`BadInput` in ``exc``'s chain, if any."""
    return next((e for e in _chain(exc) if isinstance(e, BadInput)), None)
