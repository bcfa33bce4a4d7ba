"""``vidpipe serve`` (and ``serve stop``, ``logs``): the whole product on this host, supervised.

`serve` runs `vidpipe up` (infrastructure), then every service of
:data:`infra.local.programs.PROGRAMS` under supervisord, and returns once all are RUNNING
(``--foreground``: supervisord stays in the foreground until SIGTERM or Ctrl-C). Settings
come from the environment, as for compose and Kubernetes (``VIDPIPE_*``).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from infra.local import serve as supervised
from infra.local import stack
from infra.local.processes import StackError
from infra.local.programs import ServeOptions
from vidpipe.logs import configure_logging
from vidpipe.settings import ServiceSettings
from vidpipe_cli.paths import STATE_DIR

app = typer.Typer(
    add_completion=False,
    help="Every vidpipe service on this host under supervisord (`serve`, `serve stop`).",
)


def serve_paths() -> supervised.ServePaths:
    return supervised.ServePaths(STATE_DIR)


def format_uptime(seconds: float | None) -> str:
    """``3725`` -> ``1h02m05s``; None -> ``-``."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_row(row: supervised.ProgramStatus) -> str:
    """One line of `vidpipe status` for a served program."""
    mark = "ok  " if row.running else "DOWN"
    pid = str(row.pid) if row.pid else "-"
    if row.metrics_port is not None:
        port = f"metrics :{row.metrics_port}"
    elif row.http_port is not None:
        port = f"http :{row.http_port}"
    else:
        port = "-"
    return (
        f"{mark} {row.name:<13} {row.state:<9} pid {pid:<8} up {format_uptime(row.uptime_s):<10} "
        f"restarts {row.restarts:<3} {port}"
    )


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    detectors: Annotated[
        int, typer.Option(min=1, help="detector replicas (one consumer group)")
    ] = 1,
    port_offset: Annotated[
        int, typer.Option(help="added to every service port (a second instance on this host)")
    ] = 0,
    foreground: Annotated[
        bool, typer.Option(help="keep supervisord in the foreground (until SIGTERM/Ctrl-C)")
    ] = False,
    timeout_s: Annotated[float, typer.Option(help="longest wait for RUNNING")] = 180.0,
) -> None:
    """Start every vidpipe service on this host under supervisord (restart on failure,
    rotated logs under var/log/serve/); re-run to change --detectors. Stop with
    `vidpipe serve stop` (services) or `vidpipe down` (services and infrastructure)."""
    if ctx.invoked_subcommand is not None:
        return
    configure_logging()
    try:
        stack.up(ServiceSettings(), STATE_DIR)
        # A running instance keeps the extra environment it was given (the demo's camera
        # allow-list for the dashboard).
        saved = supervised.saved_options(serve_paths())
        running = supervised.supervisord_pid(serve_paths()) is not None
        extra_env = saved.extra_env if saved and running else {}
        options = ServeOptions(detectors, port_offset, extra_env)
        if foreground:
            typer.echo(f"supervisord in the foreground; logs in {serve_paths().log_dir}")
        rows = supervised.start(options, serve_paths(), foreground, timeout_s)
    except (StackError, ValueError) as exc:
        typer.echo(f"vidpipe serve failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    for row in rows:
        typer.echo(format_row(row))
    typer.echo(f"logs: {serve_paths().log_dir}; stop: `vidpipe serve stop` or `vidpipe down`")


@app.command("stop")
def stop_serve() -> None:
    """Stop the services `vidpipe serve` started (the infrastructure keeps running)."""
    configure_logging()
    if supervised.shutdown(serve_paths()):
        typer.echo("services stopped")
    else:
        typer.echo("vidpipe serve is not running")


def logs(
    program: Annotated[str, typer.Argument(help="program name, as `vidpipe status` lists it")],
    lines: Annotated[int, typer.Option("-n", "--lines", help="how many lines")] = 50,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="keep printing")] = False,
) -> None:
    """Print the end of a served program's log (var/log/serve/PROGRAM.log)."""
    path = serve_paths().log_file(program)
    if not path.exists():
        known = sorted(p.stem for p in serve_paths().log_dir.glob("*.log"))
        raise typer.BadParameter(f"no log for {program!r}; known: {', '.join(known) or 'none'}")
    if follow:
        os.execvp("tail", ["tail", "-n", str(lines), "-F", str(path)])
    text = path.read_text(errors="replace").splitlines()
    typer.echo("\n".join(text[-lines:]))


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="serve")
    app_.command()(logs)
