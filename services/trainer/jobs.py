"""Training jobs in Postgres ``training_jobs`` (migrations 0003 + 0004).

Postgres is the source of truth; the Kafka event (:mod:`services.trainer.announce`) only
wakes a trainer early. State machine::

    queued --claim--> running --finish--> succeeded | failed
       ^                 |
       +--- recover -----+   (trainer died: heartbeat stale; failed after max_attempts)

``claim`` is a conditional UPDATE, so of several trainers exactly one takes a job. A running
job's ``heartbeat_at`` is refreshed by its trainer; :meth:`JobStore.recover_orphans` (run at
trainer start) re-queues jobs whose heartbeat is older than ``stale_after_s``. A job cancelled
(dashboard, API) while running is noticed at the trainer's next heartbeat, which then stops it.

Datasets are named as in :data:`vidpipe.topics.DATASET_NAME`: a job may use shared sets and
its own client's (``client/name``), never another client's.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol, Self

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vidpipe.topics import dataset_usable_by

log = logging.getLogger(__name__)

#: SQL filter on the trainer's client scope; takes the client list twice.
_IN_SCOPE = "(%s::text[] IS NULL OR client_id = ANY(%s::text[]))"

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
#: Short names accepted by the CLI -> torchvision builder names stored in the job.
ARCHITECTURES = {
    "ssdlite": "ssdlite320_mobilenet_v3_large",
    "fasterrcnn": "fasterrcnn_mobilenet_v3_large_320_fpn",
}
_MODEL_URI = re.compile(
    r"^models:/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})(?:@([A-Za-z0-9_-]{1,64})|/([1-9][0-9]{0,8}))$"
)


class ModelUri(NamedTuple):
    """A registry reference: ``models:/NAME@ALIAS`` (``version`` None) or
    ``models:/NAME/VERSION`` (``alias`` None)."""

    name: str
    alias: str | None
    version: str | None


def parse_model_uri(uri: str) -> ModelUri:
    """Split ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.

    Raises:
        ValueError: any other form.
    """
    match = _MODEL_URI.fullmatch(uri)
    if match is None:
        raise ValueError(f"{uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    return ModelUri(match[1], match[2], match[3])


def dataset_name(reference: str) -> str:
    """Dataset name as the datasets bucket spells it: ``acme/set/annotations.json`` (the key
    of its COCO file) and ``acme/set/`` both become ``acme/set``."""
    return reference.removesuffix("/annotations.json").rstrip("/")


class JobSpec(BaseModel):
    """What a submitter chooses. ``architecture`` is a torchvision builder name (or a key
    of :data:`ARCHITECTURES`); ``image_size`` is the training input side in pixels;
    ``base_model`` (``models:/NAME@ALIAS`` or ``/VERSION``) is a model the trainer registered
    earlier to start from instead of random weights.

    Raises ``pydantic.ValidationError`` for an unknown architecture, a malformed dataset
    name or base model, or a dataset another client owns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str
    dataset: str
    architecture: str
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=4, ge=1)
    learning_rate: float = Field(default=0.005, gt=0)
    image_size: int = Field(default=320, ge=32)
    eval_dataset: str | None = None
    base_model: str | None = None
    created_by: str | None = None
    model_name: str | None = Field(default=None, description="registry name to register as")

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        name = normalize_architecture(value)
        if name not in ARCHITECTURES.values():
            supported = ", ".join(sorted(ARCHITECTURES) + sorted(ARCHITECTURES.values()))
            raise ValueError(f"unsupported architecture {value!r}; use one of {supported}")
        return name

    @field_validator("dataset", "eval_dataset")
    @classmethod
    def _dataset_name(cls, value: str | None) -> str | None:
        return None if value is None else dataset_name(value)

    @field_validator("base_model")
    @classmethod
    def _model_uri(cls, value: str | None) -> str | None:
        if value is not None:
            parse_model_uri(value)
        return value

    @model_validator(mode="after")
    def _datasets_usable(self) -> Self:
        for field in ("dataset", "eval_dataset"):
            name = getattr(self, field)
            if name is not None and not dataset_usable_by(name, self.client_id):
                raise ValueError(
                    f"{field} {name!r} belongs to another client; use a shared dataset or "
                    f"'{self.client_id}/<name>'"
                )
        return self


class TrainingJob(BaseModel):
    """One row of ``training_jobs`` (``base_model``: see :class:`JobSpec`)."""

    model_config = ConfigDict(frozen=True, extra="ignore", protected_namespaces=())

    job_id: int
    client_id: str
    dataset: str
    architecture: str
    epochs: int
    batch_size: int
    learning_rate: float
    image_size: int
    eval_dataset: str | None = None
    base_model: str | None = None
    state: JobState
    reason: str | None = None
    attempts: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    model_name: str | None = None
    model_version: str | None = None
    mlflow_run_id: str | None = None


class JobQueue(Protocol):
    """The job operations the trainer needs (Postgres in production, a fake in unit tests)."""

    def claim(self, job_id: int) -> TrainingJob | None: ...

    def heartbeat(self, job_id: int) -> bool: ...

    def succeed(self, job_id: int, model_name: str, model_version: str, run_id: str) -> None: ...

    def fail(self, job_id: int, reason: str) -> None: ...

    def requeue(self, job_id: int) -> None: ...

    def next_queued(self) -> int | None: ...

    def recover_orphans(self, stale_after_s: float, max_attempts: int) -> list[TrainingJob]: ...


def normalize_architecture(name: str) -> str:
    """``ssdlite``/``fasterrcnn`` -> torchvision builder name; other names pass through."""
    return ARCHITECTURES.get(name, name)


def after_crash(attempts: int, max_attempts: int) -> tuple[JobState, str | None]:
    """State of an orphaned running job: re-queued, or failed once it was claimed
    ``max_attempts`` times (a job that kills its trainer must not loop forever)."""
    if attempts >= max_attempts:
        return "failed", f"trainer died while running it {attempts} times (max {max_attempts})"
    return "queued", None


class JobStore:
    """:class:`JobQueue` on Postgres. One short autocommit connection per call (the
    heartbeat thread and the trainer loop never share a connection).

    ``clients`` restricts claiming, polling and recovery to those clients' jobs (a trainer
    dedicated to some tenants; tests on a shared database); ``None`` means every client.
    """

    def __init__(self, dsn: str, clients: Sequence[str] | None = None) -> None:
        self._dsn = dsn
        self._clients = list(clients) if clients is not None else None

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self._dsn, autocommit=True, row_factory=dict_row)

    def submit(self, spec: JobSpec) -> TrainingJob:
        """Insert a queued job. Raises ``psycopg.errors.ForeignKeyViolation`` for an unknown
        client and ``CheckViolation`` for non-positive numbers."""
        values = spec.model_dump() | {"architecture": normalize_architecture(spec.architecture)}
        columns = ", ".join(values)
        marks = ", ".join(["%s"] * len(values))
        with self._connect() as conn:
            row = conn.execute(
                f"INSERT INTO training_jobs ({columns}) VALUES ({marks}) RETURNING *",
                tuple(values.values()),
            ).fetchone()
        assert row is not None
        job = TrainingJob.model_validate(row)
        log.info("training job queued", extra={"job_id": job.job_id, "client_id": job.client_id})
        return job

    def get(self, job_id: int) -> TrainingJob | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM training_jobs WHERE job_id = %s", (job_id,))
            found = row.fetchone()
        return TrainingJob.model_validate(found) if found else None

    def list_jobs(self, client_id: str | None = None, limit: int = 50) -> list[TrainingJob]:
        """Newest first, optionally one client's."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM training_jobs WHERE %(c)s::text IS NULL OR client_id = %(c)s"
                " ORDER BY job_id DESC LIMIT %(n)s",
                {"c": client_id, "n": limit},
            ).fetchall()
        return [TrainingJob.model_validate(r) for r in rows]

    def claim(self, job_id: int) -> TrainingJob | None:
        """queued -> running for this trainer; ``None`` if another trainer took it or it is
        not queued (finished, cancelled, unknown)."""
        with self._connect() as conn:
            row = conn.execute(
                "UPDATE training_jobs SET state = 'running', started_at = now(),"
                " heartbeat_at = now(), updated_at = now(), attempts = attempts + 1,"
                " reason = NULL WHERE job_id = %s AND state = 'queued' AND"
                f" {_IN_SCOPE} RETURNING *",
                (job_id, self._clients, self._clients),
            ).fetchone()
        return TrainingJob.model_validate(row) if row else None

    def heartbeat(self, job_id: int) -> bool:
        """Refresh a running job's heartbeat; ``False`` when it is no longer ``running``
        (cancelled, or recovered as an orphan): its trainer should stop working on it."""
        with self._connect() as conn:
            row = conn.execute(
                "UPDATE training_jobs SET heartbeat_at = now()"
                " WHERE job_id = %s AND state = 'running' RETURNING job_id",
                (job_id,),
            ).fetchone()
        return row is not None

    def succeed(self, job_id: int, model_name: str, model_version: str, run_id: str) -> None:
        self._finish(job_id, "succeeded", None, model_name, model_version, run_id)

    def fail(self, job_id: int, reason: str) -> None:
        self._finish(job_id, "failed", reason[:2000], None, None, None)

    def _finish(
        self,
        job_id: int,
        state: JobState,
        reason: str | None,
        model_name: str | None,
        model_version: str | None,
        run_id: str | None,
    ) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE training_jobs SET state = %s, reason = %s, finished_at = now(),"
                " updated_at = now(), model_name = %s, model_version = %s, mlflow_run_id = %s"
                " WHERE job_id = %s AND state = 'running'",
                (state, reason, model_name, model_version, run_id, job_id),
            )
        log.info("training job %s", state, extra={"job_id": job_id, "reason": reason})

    def cancel(self, job_id: int, reason: str) -> TrainingJob | None:
        """queued/running -> cancelled; ``None`` when the job is unknown or already final."""
        with self._connect() as conn:
            row = conn.execute(
                "UPDATE training_jobs SET state = 'cancelled', reason = %s, finished_at = now(),"
                " updated_at = now() WHERE job_id = %s AND state IN ('queued', 'running')"
                " RETURNING *",
                (reason, job_id),
            ).fetchone()
        return TrainingJob.model_validate(row) if row else None

    def requeue(self, job_id: int) -> None:
        """running -> queued without counting the attempt (the trainer is shutting down)."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE training_jobs SET state = 'queued', updated_at = now(),"
                " attempts = greatest(attempts - 1, 0) WHERE job_id = %s AND state = 'running'",
                (job_id,),
            )
        log.info("training job re-queued (trainer stopping)", extra={"job_id": job_id})

    def next_queued(self) -> int | None:
        """The oldest queued job's id (lost Kafka events and dashboard submissions)."""
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT job_id FROM training_jobs WHERE state = 'queued' AND {_IN_SCOPE}"
                " ORDER BY created_at, job_id LIMIT 1",
                (self._clients, self._clients),
            ).fetchone()
        return int(row["job_id"]) if row else None

    def recover_orphans(self, stale_after_s: float, max_attempts: int) -> list[TrainingJob]:
        """Re-queue (or fail, see :func:`after_crash`) running jobs whose heartbeat is older
        than ``stale_after_s`` seconds; returns them in their new state."""
        recovered: list[TrainingJob] = []
        with self._connect() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT * FROM training_jobs WHERE state = 'running' AND"
                " coalesce(heartbeat_at, started_at, updated_at)"
                f" < now() - make_interval(secs => %s) AND {_IN_SCOPE} FOR UPDATE SKIP LOCKED",
                (stale_after_s, self._clients, self._clients),
            ).fetchall()
            for row in rows:
                state, reason = after_crash(int(row["attempts"]), max_attempts)
                updated = conn.execute(
                    "UPDATE training_jobs SET state = %s, reason = %s, updated_at = now(),"
                    " finished_at = CASE WHEN %s = 'failed' THEN now() END"
                    " WHERE job_id = %s RETURNING *",
                    (state, reason, state, row["job_id"]),
                ).fetchone()
                assert updated is not None
                recovered.append(TrainingJob.model_validate(updated))
                log.warning(
                    "orphaned training job %s",
                    "re-queued" if state == "queued" else "failed",
                    extra={"job_id": row["job_id"], "attempts": row["attempts"]},
                )
        return recovered


@contextmanager
def heartbeat(
    queue: JobQueue, job_id: int, every_s: float, on_lost: Callable[[], None] | None = None
) -> Iterator[None]:
    """Refresh the job's heartbeat every ``every_s`` seconds in a daemon thread while the
    block runs (training blocks the calling thread). When the job is found no longer
    ``running`` (cancelled), ``on_lost`` is called once and beating stops. Heartbeat errors
    (database down) are logged, not raised."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                running = queue.heartbeat(job_id)
            except Exception:
                log.exception("heartbeat failed", extra={"job_id": job_id})
                continue
            if not running:
                log.warning(
                    "training job is no longer running (cancelled?)", extra={"job_id": job_id}
                )
                if on_lost is not None:
                    on_lost()
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
