"""``vidpipe train submit|cancel|list``: training jobs, through the same rules as the API
(:func:`vidpipe.jobs.submit_job`, :func:`vidpipe.jobs.cancel_job`).

The model catalog (mlflow) is imported inside ``submit``: ``vidpipe --help`` stays instant.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated

import sqlalchemy as sa
import typer
from pydantic import ValidationError

from vidpipe.bus import announce_job
from vidpipe.datasets import StoredDatasets
from vidpipe.db import create_engine
from vidpipe.jobs import (
    ARCHITECTURES,
    JobFinished,
    JobNotFound,
    JobRejected,
    JobSpec,
    JobStore,
    cancel_job,
    submit_job,
)
from vidpipe.logs import configure_logging
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings

app = typer.Typer(no_args_is_help=True, help="Training jobs for the trainer service.")
Architecture = StrEnum("Architecture", {name: name for name in ARCHITECTURES})  # type: ignore[misc]
_DEFAULTS = JobSpec.model_fields


@contextmanager
def _jobs(settings: ServiceSettings) -> Iterator[JobStore]:
    engine = create_engine(settings.postgres, pool_size=1)
    try:
        yield JobStore(engine)
    finally:
        engine.dispose()


@app.command("submit")
def submit(
    dataset: Annotated[
        str, typer.Option(help="dataset in s3://datasets: shared NAME or CLIENT/NAME (COCO)")
    ],
    client: Annotated[str, typer.Option(help="client id the job belongs to")],
    architecture: Annotated[Architecture, typer.Option()] = "ssdlite",  # type: ignore[assignment]
    epochs: Annotated[int, typer.Option(min=1)] = _DEFAULTS["epochs"].default,
    batch_size: Annotated[int, typer.Option(min=1)] = _DEFAULTS["batch_size"].default,
    lr: Annotated[float, typer.Option(min=0.0, help="SGD learning rate")] = (
        _DEFAULTS["learning_rate"].default
    ),
    image_size: Annotated[int, typer.Option(help="input side in px")] = (
        _DEFAULTS["image_size"].default
    ),
    eval_dataset: Annotated[str | None, typer.Option(help="held-out dataset for mAP")] = None,
    name: Annotated[str | None, typer.Option(help="registry name (default CLIENT-ARCH)")] = None,
    base_model: Annotated[
        str | None,
        typer.Option(help="start from this trained model: models:/NAME@ALIAS or models:/NAME/V"),
    ] = None,
) -> None:
    """Queue a training job in Postgres and announce it on ``training.jobs.v1``."""
    from vidpipe_ml.catalog import ModelCatalog

    configure_logging("WARNING")
    settings = ServiceSettings()
    try:
        spec = JobSpec(
            client_id=client,
            dataset=dataset,
            architecture=str(architecture),
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            image_size=image_size,
            eval_dataset=eval_dataset,
            base_model=base_model,
            model_name=name,
            created_by=getpass.getuser(),
        )
    except ValidationError as exc:
        messages = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        typer.echo(f"job not queued: {messages}", err=True)
        raise typer.Exit(2) from exc
    datasets = StoredDatasets(ObjectStore(settings.s3))
    try:
        with _jobs(settings) as store:
            job = submit_job(store, spec, datasets, ModelCatalog(settings.mlflow.tracking_uri))
    except JobRejected as exc:
        typer.echo(f"job not queued: {exc}", err=True)
        raise typer.Exit(2) from exc
    except sa.exc.IntegrityError as exc:
        typer.echo(f"job not queued: client {client!r} does not exist", err=True)
        raise typer.Exit(2) from exc
    asyncio.run(announce_job(settings.kafka, job.job_id))
    typer.echo(f"job {job.job_id} queued ({job.architecture} on {job.dataset})")


@app.command("cancel")
def cancel(job_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Cancel a queued or running job (a running one stops at its trainer's next heartbeat)."""
    try:
        with _jobs(ServiceSettings()) as store:
            cancel_job(store, job_id, getpass.getuser())
    except (JobNotFound, JobFinished) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"job {job_id} cancelled")


@app.command("list")
def list_jobs(
    client: Annotated[str | None, typer.Option(help="only this client's jobs")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
) -> None:
    """Recent training jobs, newest first."""
    with _jobs(ServiceSettings()) as store:
        jobs = store.list_jobs(client, limit=limit)
    for job in jobs:
        model = f"{job.model_name}/{job.model_version}" if job.model_version else "-"
        typer.echo(
            f"{job.job_id:>6} {job.state:<9} {job.client_id:<16} {job.architecture:<38}"
            f" {job.dataset:<24} {model} {job.reason or ''}"
        )
