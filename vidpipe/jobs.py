"""Training jobs: what may be submitted, and the ``training_jobs`` table's one store.

Postgres is the source of truth; the Kafka event :class:`vidpipe.events.TrainingJobQueued`
only wakes a trainer early. State machine::

    queued --claim--> running --finish--> succeeded | failed
       ^                 |
       +--- recover -----+   (trainer died: heartbeat stale; failed after max_attempts)
    queued | running --cancel--> cancelled

``claim`` is a conditional UPDATE, so of several trainers exactly one takes a job. A claim
is *fenced*: it records the trainer's id and a new ``fence_token`` (incremented on every
claim and every recovery), and everything the trainer later writes (heartbeat, succeed,
fail, cancel acknowledgement, re-queue) is an UPDATE conditional on (job id, trainer id,
token) that reports whether it won. A trainer that stalled past ``stale_after_s`` (GC
pause, SIGSTOP, a frozen VM) therefore finds every write refused once the job was
recovered or re-claimed, stops, and registers nothing. A running job's ``heartbeat_at`` is
refreshed by its trainer; :meth:`JobStore.recover_orphans` re-queues jobs whose heartbeat
is older than ``stale_after_s``. A job cancelled while it runs is noticed at the trainer's
next heartbeat, which the trainer acknowledges (:meth:`JobStore.acknowledge_cancel`).

:func:`submit_job` and :func:`cancel_job` are the one implementation of the submission and
cancellation rules; the CLI, the API and the dashboard pages all call them. Submissions are
bounded per client (:class:`JobQuota`): jobs queued or running at once, and the size of one
job in image passes (epochs x training images).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from vidpipe.datasets import dataset_name, dataset_usable_by
from vidpipe.db import training_jobs
from vidpipe.ids import ID_PATTERN
from vidpipe.modelref import ModelSelector, parse_model_ref

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
#: Detection architectures the trainer builds: short name -> torchvision builder name.
ARCHITECTURES: dict[str, str] = {
    "ssdlite": "ssdlite320_mobilenet_v3_large",
    "fasterrcnn": "fasterrcnn_mobilenet_v3_large_320_fpn",
}
ARCHITECTURE_NAMES: tuple[str, ...] = tuple(ARCHITECTURES.values())


def normalize_architecture(name: str) -> str:
    """``ssdlite``/``fasterrcnn`` -> torchvision builder name; other names pass through."""
    return ARCHITECTURES.get(name, name)


def check_architecture(value: str) -> str:
    """The torchvision builder name of a supported architecture (short names accepted).

    Raises:
        ValueError: the trainer does not build it; the message lists what it builds.
    """
    name = normalize_architecture(value)
    if name not in ARCHITECTURE_NAMES:
        supported = ", ".join(sorted(ARCHITECTURES) + sorted(ARCHITECTURE_NAMES))
        raise ValueError(f"unsupported architecture {value!r}; the trainer supports {supported}")
    return name


class JobSpec(BaseModel):
    """What a submitter chooses.

    ``architecture``: a torchvision builder name or a key of :data:`ARCHITECTURES`;
    ``dataset``/``eval_dataset``: shared ``name`` or the client's ``client/name``;
    ``image_size``: training input side in pixels; ``base_model``: a model reference
    (:mod:`vidpipe.modelref`) to start from instead of random weights.

    Raises ``pydantic.ValidationError`` for an unknown architecture, out-of-range numbers,
    a malformed dataset name or base model, or a dataset another client owns.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    client_id: str = Field(pattern=ID_PATTERN)
    dataset: str
    architecture: str
    epochs: int = Field(default=10, ge=1, le=1000)
    batch_size: int = Field(default=4, ge=1, le=256)
    learning_rate: float = Field(default=0.005, gt=0, le=1)
    image_size: int = Field(default=320, ge=64, le=2048)
    eval_dataset: str | None = None
    base_model: str | None = Field(default=None, max_length=300)
    created_by: str | None = None
    model_name: str | None = Field(default=None, description="registry name to register as")

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        return check_architecture(value)

    @field_validator("dataset", "eval_dataset")
    @classmethod
    def _dataset_usable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        name = dataset_name(value)
        client = info.data.get("client_id")
        if client is not None and not dataset_usable_by(name, client):
            raise ValueError(
                f"dataset {name!r} belongs to another client: use a shared dataset or one "
                f"under your client's prefix '{client}/'"
            )
        return name

    @field_validator("base_model")
    @classmethod
    def _model_ref(cls, value: str | None) -> str | None:
        return None if value is None else parse_model_ref(value).uri


@dataclass(frozen=True)
class Claim:
    """A trainer's hold on a job: every write the trainer makes is conditional on
    ``job_id``, ``trainer_id`` and ``token`` (the ``fence_token`` its claim received)."""

    job_id: int
    trainer_id: str
    token: int


class TrainingJob(BaseModel):
    """One row of ``training_jobs`` (fields as in :class:`JobSpec`, plus its life).

    ``trainer_id``/``fence_token``: who claimed it last and that claim's token."""

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
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    created_by: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    mlflow_run_id: str | None = None
    trainer_id: str | None = None
    fence_token: int = 0

    @property
    def claim(self) -> Claim:
        """The claim this row records.

        Raises:
            ValueError: the job was never claimed (or its claim was released)."""
        if self.trainer_id is None:
            raise ValueError(f"training job {self.job_id} is not claimed")
        return Claim(self.job_id, self.trainer_id, self.fence_token)

    @property
    def idempotency_key(self) -> str:
        """``<job_id>@<created_at>``: names this job's registered model version (unique
        even if a database reset reuses job ids)."""
        return f"{self.job_id}@{self.created_at.isoformat()}"


class JobRejected(ValueError):
    """A submission breaks a rule that needs storage or the registry to check; ``field``
    names the offending input."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class JobNotFound(LookupError):
    """No such job (or not one of the caller's client)."""


class JobFinished(RuntimeError):
    """The job is already final; ``state`` says which."""

    def __init__(self, job_id: int, state: str) -> None:
        super().__init__(f"training job {job_id} is {state}; only queued or running jobs change")
        self.state = state


class JobQuotaExceeded(RuntimeError):
    """The client already has as many jobs queued or running as its quota allows."""


@dataclass(frozen=True)
class JobQuota:
    """Per-client bounds on training work: ``max_active`` jobs queued or running at once,
    and ``max_image_epochs`` image passes (epochs x training images) in one job."""

    max_active: int = 3
    max_image_epochs: int = 500_000


DEFAULT_QUOTA = JobQuota()


class DatasetLookup(Protocol):
    def exists(self, name: str) -> bool: ...

    def names(self) -> list[str]:
        """Every stored dataset's name."""
        ...

    def image_count(self, name: str) -> int:
        """Images of an existing dataset."""
        ...


class ModelLookup(Protocol):
    def version_of(self, selector: ModelSelector, client_id: str | None = None) -> str:
        """The version ``selector`` points to, of a model ``client_id`` may use. Raises
        ``LookupError`` when it does not exist (or is another client's)."""
        ...


def after_crash(attempts: int, max_attempts: int) -> tuple[JobState, str | None]:
    """State of an orphaned running job: re-queued, or failed once it was claimed
    ``max_attempts`` times (a job that kills its trainer must not loop forever)."""
    if attempts >= max_attempts:
        return "failed", f"trainer died while running it {attempts} times (max {max_attempts})"
    return "queued", None


class JobStore:
    """The ``training_jobs`` table. Each call runs in its own transaction on ``engine``
    (the heartbeat thread and the trainer loop never share a connection).

    ``clients`` restricts claiming, polling and recovery to those clients' jobs (a trainer
    dedicated to some tenants; tests on a shared database); ``None`` means every client.
    """

    def __init__(self, engine: sa.Engine, clients: Sequence[str] | None = None) -> None:
        self._engine = engine
        self._clients = list(clients) if clients is not None else None

    def _in_scope(self) -> sa.ColumnElement[bool]:
        if self._clients is None:
            return sa.true()
        return training_jobs.c.client_id.in_(self._clients)

    def _one(self, statement: sa.Executable) -> TrainingJob | None:
        with self._engine.begin() as conn:
            row = conn.execute(statement).one_or_none()
        return None if row is None else TrainingJob.model_validate(row._mapping)

    def insert(self, spec: JobSpec, max_active: int | None = None) -> TrainingJob:
        """Insert a queued job (no existence checks: see :func:`submit_job`), unless the
        client already has ``max_active`` jobs queued or running (checked under a per-client
        lock, so concurrent submissions cannot overshoot).

        Raises:
            JobQuotaExceeded: the client is at ``max_active``.
            sqlalchemy.exc.IntegrityError: an unknown client.
        """
        t = training_jobs
        with self._engine.begin() as conn:
            if max_active is not None:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_quota_lock(spec.client_id))))
                active = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(t)
                    .where(t.c.client_id == spec.client_id, t.c.state.in_(("queued", "running")))
                ).scalar_one()
                if active >= max_active:
                    raise JobQuotaExceeded(
                        f"{active} training jobs are queued or running for this client (the"
                        f" limit is {max_active}); wait for one to finish or cancel one"
                    )
            row = conn.execute(sa.insert(t).values(**spec.model_dump()).returning(t)).one()
        job = TrainingJob.model_validate(row._mapping)
        log.info("training job queued", extra={"job_id": job.job_id, "client_id": job.client_id})
        return job

    def get(self, job_id: int) -> TrainingJob | None:
        return self._one(sa.select(training_jobs).where(training_jobs.c.job_id == job_id))

    def list_jobs(
        self, client_id: str | None = None, state: JobState | None = None, limit: int = 50
    ) -> list[TrainingJob]:
        """Newest first, optionally one client's and one state's."""
        t = training_jobs
        query = sa.select(t).order_by(t.c.job_id.desc()).limit(limit)
        if client_id is not None:
            query = query.where(t.c.client_id == client_id)
        if state is not None:
            query = query.where(t.c.state == state)
        with self._engine.connect() as conn:
            return [TrainingJob.model_validate(r._mapping) for r in conn.execute(query)]

    def claim(self, job_id: int, trainer_id: str) -> TrainingJob | None:
        """queued -> running, owned by ``trainer_id`` with a new fence token (the row's
        :attr:`TrainingJob.claim`); ``None`` if another trainer took it or it is not queued."""
        t = training_jobs
        return self._one(
            sa.update(t)
            .where(t.c.job_id == job_id, t.c.state == "queued", self._in_scope())
            .values(
                state="running",
                started_at=sa.func.now(),
                heartbeat_at=sa.func.now(),
                updated_at=sa.func.now(),
                attempts=t.c.attempts + 1,
                reason=None,
                trainer_id=trainer_id,
                fence_token=t.c.fence_token + 1,
            )
            .returning(t)
        )

    def _fenced(self, claim: Claim, current: JobState, action: str, **values: Any) -> bool:
        """UPDATE the job to ``values`` if ``claim`` still holds it and it is ``current``;
        whether it won. A refusal is logged (the caller stops working on the job)."""
        t = training_jobs
        with self._engine.begin() as conn:
            row = conn.execute(
                sa.update(t)
                .where(
                    t.c.job_id == claim.job_id,
                    t.c.trainer_id == claim.trainer_id,
                    t.c.fence_token == claim.token,
                    t.c.state == current,
                )
                .values(**values)
                .returning(t.c.job_id)
            ).one_or_none()
        if row is None:
            log.warning(
                "training job %s refused: the claim is no longer held",
                action,
                extra={"job_id": claim.job_id, "trainer_id": claim.trainer_id,
                       "fence_token": claim.token},
            )  # fmt: skip
        return row is not None

    def heartbeat(self, claim: Claim) -> bool:
        """Refresh the heartbeat of a running job ``claim`` holds; ``False`` when it no
        longer does (cancelled, recovered as an orphan, re-claimed): its trainer must stop
        working on it and register nothing. Also the trainer's fence check before it
        registers a model and before it moves an alias."""
        return self._fenced(claim, "running", "heartbeat", heartbeat_at=sa.func.now())

    def succeed(self, claim: Claim, model_name: str, model_version: str, run_id: str) -> bool:
        """running -> succeeded with what it registered; ``False`` (nothing changes) when
        ``claim`` no longer holds the job."""
        return self._finish(
            claim, "succeeded", model_name=model_name, model_version=model_version,
            mlflow_run_id=run_id,
        )  # fmt: skip

    def fail(self, claim: Claim, reason: str) -> bool:
        """running -> failed with ``reason`` (cut to 2,000 characters); ``False`` when
        ``claim`` no longer holds the job."""
        return self._finish(claim, "failed", reason=reason[:2000])

    def _finish(self, claim: Claim, state: JobState, **values: Any) -> bool:
        won = self._fenced(
            claim, "running", state, state=state, finished_at=sa.func.now(),
            updated_at=sa.func.now(), **values,
        )  # fmt: skip
        if won:
            log.info("training job %s", state, extra={"job_id": claim.job_id, **values})
        return won

    def cancel(self, job_id: int, reason: str, client_id: str | None = None) -> TrainingJob | None:
        """queued/running -> cancelled; ``None`` when the job is unknown (or not
        ``client_id``'s) or already final. A running job's trainer notices at its next
        heartbeat and acknowledges (:meth:`acknowledge_cancel`)."""
        t = training_jobs
        query = sa.update(t).where(t.c.job_id == job_id, t.c.state.in_(("queued", "running")))
        if client_id is not None:
            query = query.where(t.c.client_id == client_id)
        return self._one(
            query.values(
                state="cancelled",
                reason=reason,
                finished_at=sa.func.now(),
                updated_at=sa.func.now(),
            ).returning(t)
        )

    def acknowledge_cancel(self, claim: Claim) -> bool:
        """The trainer holding ``claim`` stopped working on its cancelled job: the claim is
        released (``trainer_id`` cleared). ``False`` when the job is not cancelled or
        ``claim`` no longer holds it."""
        return self._fenced(
            claim, "cancelled", "cancel acknowledgement", trainer_id=None,
            updated_at=sa.func.now(),
        )  # fmt: skip

    def requeue(self, claim: Claim) -> bool:
        """running -> queued without counting the attempt (the trainer is shutting down);
        ``False`` when ``claim`` no longer holds the job (a stopping trainer never re-queues
        a job another trainer now runs)."""
        t = training_jobs
        won = self._fenced(
            claim, "running", "re-queue", state="queued", trainer_id=None,
            updated_at=sa.func.now(), attempts=sa.func.greatest(t.c.attempts - 1, 0),
        )  # fmt: skip
        if won:
            log.info("training job re-queued (trainer stopping)", extra={"job_id": claim.job_id})
        return won

    def next_queued(self) -> int | None:
        """The oldest queued job's id (lost Kafka events and dashboard submissions)."""
        t = training_jobs
        with self._engine.connect() as conn:
            job_id = conn.execute(
                sa.select(t.c.job_id)
                .where(t.c.state == "queued", self._in_scope())
                .order_by(t.c.created_at, t.c.job_id)
                .limit(1)
            ).scalar_one_or_none()
        return None if job_id is None else int(job_id)

    def recover_orphans(self, stale_after_s: float, max_attempts: int) -> list[TrainingJob]:
        """Re-queue (or fail, see :func:`after_crash`) running jobs whose heartbeat is older
        than ``stale_after_s`` seconds; returns them in their new state. Each recovered
        job's claim is released and its fence token incremented, so its old trainer, if it
        was only stalled, finds every later write refused."""
        t = training_jobs
        last_sign = sa.func.coalesce(t.c.heartbeat_at, t.c.started_at, t.c.updated_at)
        stale = last_sign < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, stale_after_s)
        recovered: list[TrainingJob] = []
        with self._engine.begin() as conn:
            rows = conn.execute(
                sa.select(t)
                .where(t.c.state == "running", stale, self._in_scope())
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                state, reason = after_crash(int(row.attempts), max_attempts)
                updated = conn.execute(
                    sa.update(t)
                    .where(t.c.job_id == row.job_id)
                    .values(
                        state=state,
                        reason=reason,
                        updated_at=sa.func.now(),
                        finished_at=sa.func.now() if state == "failed" else None,
                        trainer_id=None,
                        fence_token=t.c.fence_token + 1,
                    )
                    .returning(t)
                ).one()
                recovered.append(TrainingJob.model_validate(updated._mapping))
                log.warning(
                    "orphaned training job %s",
                    "re-queued" if state == "queued" else "failed",
                    extra={"job_id": row.job_id, "attempts": row.attempts},
                )
        return recovered


def _quota_lock(client_id: str) -> int:
    """A stable 63-bit advisory-lock key per client (submissions of one client serialize)."""
    return int.from_bytes(hashlib.sha256(f"jobs:{client_id}".encode()).digest()[:8]) >> 1


def submit_job(
    store: JobStore,
    spec: JobSpec,
    datasets: DatasetLookup,
    models: ModelLookup,
    quota: JobQuota | None = DEFAULT_QUOTA,
) -> TrainingJob:
    """Queue ``spec`` after checking what exists (its datasets in storage, its base model
    in the registry: shared or the client's own) and the client's ``quota`` (None: no
    bounds, for platform administrators). Announce it afterwards
    (:func:`vidpipe.bus.announce_job`).

    Raises:
        JobRejected: a dataset or the base model does not exist (or is another client's),
            or the job is larger than the quota (``field`` names which).
        JobQuotaExceeded: the client has ``quota.max_active`` jobs queued or running.
    """
    for field in ("dataset", "eval_dataset"):
        name = getattr(spec, field)
        if name is not None and not datasets.exists(name):
            usable = [n for n in datasets.names() if dataset_usable_by(n, spec.client_id)]
            raise JobRejected(
                f"dataset {name!r} not found (available: {', '.join(usable) or 'none'}); "
                "make one with `vidpipe datasets build` or `vidpipe datasets import`",
                field,
            )
    if quota is not None:
        passes = spec.epochs * datasets.image_count(spec.dataset)
        if passes > quota.max_image_epochs:
            raise JobRejected(
                f"job too large: {spec.epochs} epochs x {passes // spec.epochs} images ="
                f" {passes} image passes; the limit is {quota.max_image_epochs} per job",
                "epochs",
            )
    if spec.base_model is not None:
        try:
            models.version_of(parse_model_ref(spec.base_model), spec.client_id)
        except LookupError as exc:
            raise JobRejected(f"base model {spec.base_model}: {exc}", "base_model") from exc
    return store.insert(spec, None if quota is None else quota.max_active)


def cancel_job(
    store: JobStore, job_id: int, cancelled_by: str, client_id: str | None = None
) -> TrainingJob:
    """queued/running -> cancelled (a running job stops at its trainer's next heartbeat).

    ``client_id`` limits the cancellation to that client's jobs (``None``: any client).

    Raises:
        JobNotFound: no such job (for that client).
        JobFinished: the job is already succeeded, failed or cancelled.
    """
    job = store.cancel(job_id, f"cancelled by {cancelled_by}", client_id)
    if job is not None:
        return job
    current = store.get(job_id)
    if current is None or (client_id is not None and current.client_id != client_id):
        raise JobNotFound(f"training job {job_id} not found")
    raise JobFinished(job_id, current.state)
