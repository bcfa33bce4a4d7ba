"""``vidpipe up|down|status|provision``: the local infrastructure (no Docker)."""

from __future__ import annotations

import typer

from infra.local import serve as supervised
from infra.local import stack
from infra.local.processes import StackError
from vidpipe.logs import configure_logging
from vidpipe.settings import ServiceSettings
from vidpipe_cli.demo.dashboard import stop_dashboard
from vidpipe_cli.paths import STATE_DIR
from vidpipe_cli.serve import format_row


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
    """Stop what `vidpipe serve` and `vidpipe up` started: the supervised services, then the
    infrastructure (reused Postgres/Redis are left running)."""
    configure_logging()
    if supervised.shutdown(supervised.ServePaths(STATE_DIR)):
        typer.echo("services stopped")
    if stop_dashboard(STATE_DIR):
        typer.echo("dashboard stopped")
    stack.down(STATE_DIR)


def status() -> None:
    """Health of each local infrastructure service, then of each service `vidpipe serve`
    runs (state, pid, uptime, restarts, Prometheus port). Exits 1 when anything is down."""
    configure_logging("WARNING")
    rows = stack.status(ServiceSettings(), STATE_DIR)
    typer.echo("infrastructure:")
    for row in rows:
        mark = "ok  " if row.healthy else "DOWN"
        owner = "started by vidpipe" if row.owned else "reused"
        typer.echo(f"{mark} {row.name:<10} {row.url:<40} {owner}")
    healthy = all(r.healthy for r in rows)
    try:
        served = supervised.status(supervised.ServePaths(STATE_DIR))
    except StackError as exc:
        typer.echo(f"services: {exc}")
        raise typer.Exit(1) from exc
    if served is None:
        typer.echo("services: not served (start them with `vidpipe serve`)")
    else:
        typer.echo("services:")
        for program in served:
            typer.echo(format_row(program))
        healthy = healthy and all(p.running for p in served)
    if not healthy:
        raise typer.Exit(1)


def provision() -> None:
    """Create topics, buckets, databases and run migrations against configured services."""
    configure_logging()
    stack.provision(ServiceSettings())


def register(app: typer.Typer) -> None:
    for command in (up, down, status, provision):
        app.command()(command)
