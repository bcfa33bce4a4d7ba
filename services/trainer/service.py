"""One training job, start to finish: claim, train, log to MLflow, register as ``candidate``.

Failures end the job ``failed`` with a readable reason (missing dataset, bad architecture,
NaN loss, ...); a trainer killed mid-job leaves it ``running`` with a stale heartbeat, which
:meth:`vidpipe.jobs.JobStore.recover_orphans` repairs. A job cancelled while it runs stops
within one optimizer step of the next heartbeat and registers nothing.

Every write goes through the trainer's fenced claim (:class:`vidpipe.jobs.Claim`): a
trainer that stalled until its job was recovered and re-claimed finds its heartbeat
refused, stops, and neither registers nor moves an alias; its finish is refused too.
Registration is idempotent per job: the version is tagged with the job's idempotency key
when it is created, a retry (a trainer killed after registering, before ``succeeded``)
reuses that version instead of training again, and of two versions made by a race the
newer is deleted (:func:`vidpipe_ml.registry.settle_job_version`). Only a trainer that
still holds its claim after registering moves ``candidate``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import mlflow
import torch
from mlflow import MlflowClient

from services.trainer.data import CocoDetection, make_loader
from services.trainer.engine import evaluate, train_one_epoch
from services.trainer.settings import TrainerSettings
from vidpipe.datasets import load_dataset
from vidpipe.jobs import Claim, TrainingJob
from vidpipe.modelref import model_usable_by, parse_model_ref
from vidpipe.objectstore import ObjectStore
from vidpipe_ml.backends import Splittable
from vidpipe_ml.optimize import optimize_version
from vidpipe_ml.registry import (
    JOB_TAG,
    job_versions,
    log_registered_model,
    settle_job_version,
)
from vidpipe_ml.torchvision_models import ContractDetector, build_model, warm_start

log = logging.getLogger(__name__)


class JobQueue(Protocol):
    """The job operations the trainer needs (:class:`vidpipe.jobs.JobStore`; a fake in unit
    tests)."""

    def claim(self, job_id: int, trainer_id: str) -> TrainingJob | None: ...

    def heartbeat(self, claim: Claim) -> bool: ...

    def succeed(self, claim: Claim, model_name: str, model_version: str, run_id: str) -> bool: ...

    def fail(self, claim: Claim, reason: str) -> bool: ...

    def acknowledge_cancel(self, claim: Claim) -> bool: ...

    def requeue(self, claim: Claim) -> bool: ...


class JobInterrupted(RuntimeError):
    """The trainer is stopping; the job goes back to the queue."""


class JobCancelled(RuntimeError):
    """The trainer no longer holds the job (cancelled, or recovered and re-claimed after a
    stall); its state stays as whoever changed it left it."""


@dataclass(frozen=True)
class TrainedModel:
    name: str
    version: str
    run_id: str


@contextmanager
def heartbeat(
    queue: JobQueue, claim: Claim, every_s: float, on_lost: Callable[[], None] | None = None
) -> Iterator[None]:
    """Refresh the job's heartbeat every ``every_s`` seconds in a daemon thread while the
    block runs (training blocks the calling thread). When ``claim`` is found no longer
    holding a running job (cancelled, or recovered and re-claimed), ``on_lost`` is called
    once and beating stops. Heartbeat errors (database down) are logged, not raised."""
    stop = threading.Event()
    job_id = claim.job_id

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                held = queue.heartbeat(claim)
            except Exception:
                log.exception("heartbeat failed", extra={"job_id": job_id})
                continue
            if not held:
                log.warning(
                    "training job no longer held (cancelled or re-claimed)",
                    extra={"job_id": job_id},
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


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def model_name(job: TrainingJob) -> str:
    """The job's chosen registry name, else ``<client>-<architecture>``."""
    return job.model_name or f"{job.client_id}-{job.architecture}"


def process_job(
    settings: TrainerSettings, queue: JobQueue, job_id: int, stop: threading.Event
) -> TrainedModel | None:
    """Claim (as ``settings.trainer_id``) and run job ``job_id``; ``None`` when another
    trainer has it or it is not queued, when it is cancelled or re-claimed meanwhile (the
    claim was lost), when its finish is refused (lost at the last moment), or when
    ``stop`` (trainer shutting down) is set (the job is re-queued if still held). Never
    raises for a job's own failure (it is recorded on the job).
    """
    job = queue.claim(job_id, settings.trainer_id)
    if job is None:
        log.info("job not claimable (taken or finished)", extra={"job_id": job_id})
        return None
    claim = job.claim
    log.info(
        "training job started",
        extra={"job_id": job_id, "attempt": job.attempts, "fence_token": claim.token},
    )
    lost = threading.Event()
    try:
        with heartbeat(queue, claim, settings.heartbeat_s, on_lost=lost.set):
            trained = train_job(settings, job, stop, lost, lambda: queue.heartbeat(claim))
    except JobInterrupted:
        queue.requeue(claim)
        return None
    except JobCancelled as exc:
        log.warning("training job stopped: %s", exc, extra={"job_id": job_id})
        queue.acknowledge_cancel(claim)  # refused (and logged) when it was re-claimed
        return None
    except Exception as exc:
        log.exception("training job failed", extra={"job_id": job_id})
        queue.fail(claim, f"{type(exc).__name__}: {exc}")
        return None
    if not queue.succeed(claim, trained.name, trained.version, trained.run_id):
        return None
    return trained


def load_base_model(
    settings: TrainerSettings, uri: str, client_id: str
) -> tuple[ContractDetector, str]:
    """The registered model ``uri`` (``models:/NAME@ALIAS`` or ``/VERSION``) on the CPU, and
    its version-pinned URI (what was actually used, for the run's params). Ownership is
    checked again here (the job was checked when submitted): ``client_id`` may start only
    from a shared model or one of its own.

    Raises:
        ValueError: malformed ``uri``, a model ``client_id`` may not use (reported as not
            found), or one not trained by this trainer (e.g. the CenterNet import), which
            has no torchvision weights to start from.
        mlflow.exceptions.MlflowException: no such model, alias or version.
    """
    ref = parse_model_ref(uri)
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.tracking_uri)
    if not model_usable_by(client.get_registered_model(ref.name).tags or {}, client_id):
        raise ValueError(f"base model {uri}: model {ref.name!r} is not registered")
    version = ref.version
    if version is None:
        version = str(client.get_model_version_by_alias(ref.name, str(ref.alias)).version)
    pinned = f"models:/{ref.name}/{version}"
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    module = mlflow.pytorch.load_model(pinned, map_location="cpu")
    if not isinstance(module, ContractDetector):
        raise ValueError(
            f"base model {uri} ({pinned}, a {type(module).__name__}) was not trained by the "
            "trainer; start from a model it registered (ssdlite / fasterrcnn) or from scratch"
        )
    return module, pinned


def train_job(
    settings: TrainerSettings,
    job: TrainingJob,
    stop: threading.Event | None = None,
    cancelled: threading.Event | None = None,
    holds_claim: Callable[[], bool] | None = None,
) -> TrainedModel:
    """Train ``job``'s model, register it (idempotently: a version this job registered
    before is reused without training) and point alias ``candidate`` at it.

    ``stop`` (the trainer is shutting down) and ``cancelled`` (the claim was lost) are
    checked before every optimizer step and before registering; ``holds_claim`` (the
    fence check: a conditional heartbeat) before registering and again before moving the
    alias, so a trainer that lost its claim meanwhile never moves it.

    Raises:
        vidpipe.datasets.DatasetNotFound / InvalidDataset: bad dataset.
        ValueError: unsupported architecture, or a base model of another architecture.
        mlflow.exceptions.MlflowException: the base model does not exist.
        services.trainer.engine.NonFiniteLoss: training diverged.
        JobInterrupted: ``stop`` was set.
        JobCancelled: ``cancelled`` was set, or ``holds_claim`` said no.
    """

    def check() -> None:
        if cancelled is not None and cancelled.is_set():
            raise JobCancelled(f"job {job.job_id} is no longer held (cancelled or re-claimed)")
        if stop is not None and stop.is_set():
            raise JobInterrupted(f"job {job.job_id} interrupted: the trainer is stopping")

    def fence(when: str) -> None:
        check()
        if holds_claim is not None and not holds_claim():
            raise JobCancelled(f"job {job.job_id} is no longer held {when}")

    name = model_name(job)
    registry = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.tracking_uri)
    earlier = job_versions(registry, name, job.idempotency_key)
    if earlier:
        log.warning(
            "job already registered version %s (a retry): reusing it",
            earlier[0],
            extra={"job_id": job.job_id, "model": name},
        )
        return publish_candidate(settings, registry, name, earlier[0], fence)

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    device = pick_device(settings.device)
    store = ObjectStore(settings.s3)
    train_data = CocoDetection(load_dataset(store, job.dataset))
    eval_name = job.eval_dataset
    eval_data = CocoDetection(load_dataset(store, eval_name)) if eval_name else train_data
    model = build_model(job.architecture, train_data.num_classes, job.image_size)
    base: dict[str, str] = {}
    if job.base_model:
        base_module, pinned = load_base_model(settings, job.base_model, job.client_id)
        copied = warm_start(model, base_module, train_data.labels)
        base = {"base_model": pinned, "base_tensors_copied": f"{copied}/{len(model.state_dict())}"}
        log.info("warm start", extra={"job_id": job.job_id, **base})
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=job.learning_rate, momentum=0.9, weight_decay=1e-4)
    train_loader = make_loader(train_data, job.batch_size, shuffle=True)
    eval_loader = make_loader(eval_data, settings.eval_batch_size, shuffle=False)

    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run(run_name=f"job-{job.job_id}"):
        mlflow.set_tags({"job_id": str(job.job_id), "client_id": job.client_id})
        mlflow.log_params(
            {
                "job_id": job.job_id,
                "architecture": job.architecture,
                "dataset": train_data.dataset.name,
                "eval_dataset": eval_name or f"{train_data.dataset.name} (training set)",
                "epochs": job.epochs,
                "batch_size": job.batch_size,
                "learning_rate": job.learning_rate,
                "image_size": job.image_size,
                "num_classes": train_data.num_classes,
                "train_images": len(train_data),
                "device": str(device),
                "max_iterations_per_epoch": settings.max_iterations_per_epoch,
                "optimizer": "SGD momentum 0.9 wd 1e-4",
                **base,
            }
        )
        mlflow.log_dict({"labels": train_data.labels}, "labels.json")
        for epoch in range(job.epochs):
            stats = train_one_epoch(
                model,
                optimizer,
                train_loader,
                device,
                epoch,
                max_iterations=settings.max_iterations_per_epoch,
                log_every=settings.log_every,
                check=check,
            )
            metrics = evaluate(model, eval_loader, device, labels=train_data.labels)
            values = {"loss": stats.loss, "images_per_s": stats.images_per_s}
            values |= {f"loss_{k}": v for k, v in stats.losses.items()}
            values |= {"eval_map": metrics.map, "eval_map_50": metrics.map_50}
            values |= {"eval_map_75": metrics.map_75}
            mlflow.log_metrics(values, step=epoch)
            log.info(
                "epoch done",
                extra={
                    "job_id": job.job_id,
                    "epoch": epoch,
                    "loss": round(stats.loss, 4),
                    "images_per_s": round(stats.images_per_s, 2),
                    "eval_map": round(metrics.map, 4),
                },
            )
        fence("after training (not registering)")
        wrapped = ContractDetector(model.cpu(), train_data.labels).eval()
        tags = {
            "job_id": str(job.job_id),
            JOB_TAG: job.idempotency_key,
            "dataset": train_data.dataset.name,
        }
        if base:
            tags["base_model"] = base["base_model"]
        registered = log_registered_model(
            wrapped,
            name,
            train_data.labels,
            None,
            settings.mlflow.tracking_uri,
            owner=job.client_id,
            tags=tags,
        )
    version = settle_job_version(registry, name, job.idempotency_key, registered)
    log.info("model registered", extra={"job_id": job.job_id, "model": name, "version": version})
    trained = publish_candidate(settings, registry, name, version, fence)
    if version == registered:
        optimize_registered(settings, name, version, wrapped, eval_data, train_data)
    return trained


def publish_candidate(
    settings: TrainerSettings,
    registry: MlflowClient,
    name: str,
    version: str,
    fence: Callable[[str], None],
) -> TrainedModel:
    """Point ``settings.candidate_alias`` at ``name``/``version`` if the trainer still
    holds its claim (``fence`` raises :class:`JobCancelled` otherwise: the winner moves it).

    Raises:
        JobCancelled: the claim was lost.
        mlflow.exceptions.MlflowException: the registry fails.
    """
    fence("after registering (candidate left to the trainer holding it)")
    registry.set_registered_model_alias(name, settings.candidate_alias, version)
    run_id = registry.get_model_version(name, version).run_id or ""
    log.info(
        "candidate moved",
        extra={"model": name, "version": version, "alias": settings.candidate_alias},
    )
    return TrainedModel(name=name, version=version, run_id=run_id)


def optimize_registered(
    settings: TrainerSettings,
    name: str,
    version: str,
    module: torch.nn.Module,
    eval_data: CocoDetection,
    train_data: CocoDetection,
) -> None:
    """Try OpenVINO artifacts for the new version (:func:`vidpipe_ml.optimize.optimize_version`:
    parity gate on the evaluation set, calibration on training images); the outcome, also
    "not convertible", is recorded on the version. A failure here never fails the job."""
    calibration = (
        [(train_data[i][0] * 255).to(torch.uint8) for i in range(min(len(train_data), 100))]
        if isinstance(module, Splittable)  # else the outcome is "not convertible" at once
        else []
    )
    try:
        result = optimize_version(
            settings.mlflow.tracking_uri, name, version, eval_data.dataset, calibration, module
        )
    except Exception:
        log.exception("optimization failed; the version runs in PyTorch", extra={"model": name})
        return
    log.info("optimization: %s", result.summary())
