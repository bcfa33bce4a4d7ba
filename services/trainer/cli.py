"""``vidpipe train submit|list`` and ``vidpipe models promote`` (wired in ``services/cli.py``).

Heavy imports (torch, mlflow) happen inside the commands.
"""

from __future__ import annotations

import asyncio
import getpass
from enum import StrEnum
from typing import Annotated

import typer

from vidpipe.logs import configure_logging

train_app = typer.Typer(no_args_is_help=True, help="Training jobs for the trainer service.")


class Architecture(StrEnum):
    ssdlite = "ssdlite"
    fasterrcnn = "fasterrcnn"


@train_app.command("submit")
def submit(
    dataset: Annotated[
        str, typer.Option(help="dataset in s3://datasets: shared NAME or CLIENT/NAME (COCO)")
    ],
    client: Annotated[str, typer.Option(help="client id the job belongs to")],
    architecture: Annotated[Architecture, typer.Option()] = Architecture.ssdlite,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    lr: Annotated[float, typer.Option(min=0.0, help="SGD learning rate")] = 0.005,
    image_size: Annotated[int, typer.Option(min=32, help="input side in px")] = 320,
    eval_dataset: Annotated[str | None, typer.Option(help="held-out dataset for mAP")] = None,
    name: Annotated[str | None, typer.Option(help="registry name (default CLIENT-ARCH)")] = None,
    base_model: Annotated[
        str | None,
        typer.Option(help="start from this trained model: models:/NAME@ALIAS or models:/NAME/V"),
    ] = None,
) -> None:
    """Queue a training job in Postgres and announce it on ``training.jobs.v1``."""
    import psycopg
    from pydantic import ValidationError

    from services.evaluator.datasets import DatasetNotFound, load_dataset
    from services.trainer.announce import announce
    from services.trainer.jobs import JobSpec, JobStore
    from services.trainer.settings import TrainerSettings
    from vidpipe.objectstore import ObjectStore

    configure_logging("WARNING")
    settings = TrainerSettings()
    try:
        spec = JobSpec(
            client_id=client,
            dataset=dataset,
            architecture=architecture.value,
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
    store = ObjectStore(settings.s3)
    for name in filter(None, (spec.dataset, spec.eval_dataset)):
        try:
            load_dataset(store, name)  # exists and is valid COCO, so the job cannot fail on it
        except (DatasetNotFound, ValueError) as exc:
            typer.echo(f"job not queued: {exc}", err=True)
            raise typer.Exit(2) from exc
    try:
        job = JobStore(settings.postgres.dsn.get_secret_value()).submit(spec)
    except psycopg.errors.ForeignKeyViolation as exc:
        typer.echo(f"job not queued: client {client!r} does not exist", err=True)
        raise typer.Exit(2) from exc
    asyncio.run(announce(settings.kafka, job.job_id))
    typer.echo(f"job {job.job_id} queued ({job.architecture} on {job.dataset})")


@train_app.command("cancel")
def cancel(job_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Cancel a queued or running job (a running one stops at its trainer's next heartbeat)."""
    from services.trainer.jobs import JobStore
    from services.trainer.settings import TrainerSettings

    settings = TrainerSettings()
    job = JobStore(settings.postgres.dsn.get_secret_value()).cancel(
        job_id, f"cancelled by {getpass.getuser()}"
    )
    if job is None:
        typer.echo(f"job {job_id} is not queued or running", err=True)
        raise typer.Exit(1)
    typer.echo(f"job {job_id} cancelled")


@train_app.command("list")
def list_jobs(
    client: Annotated[str | None, typer.Option(help="only this client's jobs")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
) -> None:
    """Recent training jobs, newest first."""
    from services.trainer.jobs import JobStore
    from services.trainer.settings import TrainerSettings

    settings = TrainerSettings()
    jobs = JobStore(settings.postgres.dsn.get_secret_value()).list_jobs(client, limit)
    for job in jobs:
        model = f"{job.model_name}/{job.model_version}" if job.model_version else "-"
        typer.echo(
            f"{job.job_id:>6} {job.state:<9} {job.client_id:<16} {job.architecture:<38}"
            f" {job.dataset:<24} {model} {job.reason or ''}"
        )


def promote_cmd(
    name: str,
    from_alias: Annotated[str, typer.Option("--from", help="alias of the candidate")] = "candidate",
    to_alias: Annotated[str, typer.Option("--to", help="alias to move")] = "production",
    dataset: Annotated[str, typer.Option(help="labelled dataset both are scored on")] = (
        "vtest-persons"
    ),
    force: Annotated[bool, typer.Option(help="promote even if mAP is lower")] = False,
) -> None:
    """Move NAME@TO to NAME@FROM's version if its COCO mAP on DATASET is not lower.

    Exit codes: 0 promoted or forced, 1 refused, 2 model/dataset not found or unloadable."""
    from services.detector.model_cache import ModelUnavailable
    from services.evaluator.datasets import InvalidDataset
    from services.trainer.promote import promote
    from vidpipe.settings import ServiceSettings

    configure_logging("WARNING")
    try:
        result = promote(
            ServiceSettings(),
            name,
            from_alias,
            to_alias,
            dataset,
            force=force,
            requested_by=getpass.getuser(),
        )
    except (LookupError, InvalidDataset, ModelUnavailable) as exc:  # DatasetNotFound: Lookup
        typer.echo(f"promotion not possible: {exc}", err=True)
        raise typer.Exit(2) from exc
    production = (
        "none"
        if result.production_version is None
        else f"v{result.production_version} mAP {result.production_map:.4f}"
    )
    typer.echo(
        f"{result.decision}: {name} candidate v{result.candidate_version} mAP "
        f"{result.candidate_map:.4f} vs {to_alias} {production} on {dataset}"
    )
    if not result.moved:
        raise typer.Exit(1)
