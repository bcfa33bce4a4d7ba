"""``vidpipe up|down|status|provision``: the local infrastructure (no Docker)."""

from __future__ import annotations

import typer

from infra.local import stack
from infra.local.processes import StackError
from vidpipe.logs import configure_logging
from vidpipe.settings import ServiceSettings
from vidpipe_cli.demo.dashboard import stop_dashboard
from vidpipe_cli.paths import STATE_DIR


def up() -> None:
    """Start local infrastructure (Kafka API, S3, Postgres, Redis, MLflow, MongoDB) and
    create topics, buckets and the SQL schema. Safe to re-run."""
    configure_logging()
    try:
        stack.up(ServiceSettings(), STATE_DIR)
    except StackError as exc:
        typer.echo(f"vidpipe up failed: {exc}", err=True)
        raise typer.Exit(1) from exc


def down() -> None:
    """Stop what `vidpipe up` started (reused Postgres/Redis are left running)."""
    configure_logging()
    if stop_dashboard(STATE_DIR):
        typer.echo("dashboard stopped")
    stack.down(STATE_DIR)


def status() -> None:
    """Health of each local infrastructure service."""
    configure_logging("WARNING")
    rows = stack.status(ServiceSettings(), STATE_DIR)
    for row in rows:
        mark = "ok  " if row.healthy else "DOWN"
        owner = "started by vidpipe" if row.owned else "reused"
        typer.echo(f"{mark} {row.name:<10} {row.url:<40} {owner}")
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


def provision() -> None:
    """Create topics, buckets, databases and run migrations against configured services."""
    configure_logging()
    stack.provision(ServiceSettings())


def register(app: typer.Typer) -> None:
    for command in (up, down, status, provision):
        app.command()(command)
