"""``vidpipe users ...``: dashboard accounts (the lead mounts ``users_app`` in services/cli.py).

Heavy imports happen inside commands, so ``vidpipe --help`` stays instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

users_app = typer.Typer(no_args_is_help=True, help="Dashboard users.")


@users_app.callback()
def users() -> None:
    """Dashboard users (sign-in accounts with a role, bound to a client)."""


@users_app.command("create")
def create_user(
    email: Annotated[str, typer.Option(help="sign-in e-mail")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="at least 10 chars")],
    role: Annotated[str, typer.Option(help="viewer, operator, admin or superadmin")] = "viewer",
    client: Annotated[str | None, typer.Option(help="client id (none for a superadmin)")] = None,
) -> None:
    """Create a dashboard user of CLIENT (a superadmin has no client)."""
    from pydantic import ValidationError

    from services.dashboard import accounts
    from services.dashboard.accounts import UserIn
    from services.dashboard.db import create_engine
    from services.dashboard.errors import DashboardError
    from services.dashboard.settings import DashboardSettings

    settings = DashboardSettings()
    try:
        body = UserIn(email=email, password=password, role=role, client_id=client)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems) from exc
    engine = create_engine(settings.postgres, pool_size=1)
    try:
        with engine.connect() as conn:
            user = accounts.create_user(conn, None, body)
    except DashboardError as exc:
        typer.echo(f"cannot create user: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    where = f"client {user.client_id}" if user.client_id else "all clients"
    typer.echo(f"user {user.email} ({user.role}, {where}) created, id {user.user_id}")
