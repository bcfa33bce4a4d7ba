"""``vidpipe users``: dashboard accounts (sign-in users with a role, bound to a client)."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from vidpipe.db import create_engine
from vidpipe.settings import ServiceSettings

app = typer.Typer(no_args_is_help=True, help="Dashboard users.")


@app.callback()
def users() -> None:
    """Dashboard users (sign-in accounts with a role, bound to a client)."""


@app.command("create")
def create_user(
    email: Annotated[str, typer.Option(help="sign-in e-mail")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="at least 10 chars")],
    role: Annotated[str, typer.Option(help="viewer, operator, admin or superadmin")] = "viewer",
    client: Annotated[str | None, typer.Option(help="client id (none for a superadmin)")] = None,
) -> None:
    """Create a dashboard user of CLIENT (a superadmin has no client)."""
    # The dashboard's optional extra (argon2, fastapi): images of other services lack it.
    from services.dashboard import accounts
    from services.dashboard.accounts import UserIn
    from services.dashboard.errors import DashboardError

    settings = ServiceSettings()
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
