"""``vidpipe clients``: clients (tenants) and their detection config."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from vidpipe.configstore import ClientConfig, ConfigStore
from vidpipe.modelref import ModelSelector
from vidpipe.settings import ServiceSettings

app = typer.Typer(no_args_is_help=True, help="Clients (tenants) and their model config.")


def _store() -> ConfigStore:
    settings = ServiceSettings()
    return ConfigStore(settings.postgres, settings.redis)


@app.command("create")
def create_client(client_id: str, name: Annotated[str | None, typer.Option()] = None) -> None:
    """Create or rename a client."""
    store = _store()
    try:
        store.put_client(client_id, name or client_id)
    finally:
        store.close()
    typer.echo(f"client {client_id} saved")


@app.command("set-config")
def set_config(
    client_id: str,
    model: Annotated[str, typer.Option(help="registered model name")] = "coco-centernet",
    alias: Annotated[str | None, typer.Option(help="registry alias")] = None,
    version: Annotated[str | None, typer.Option(help="fixed model version")] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.3,
    classes: Annotated[str, typer.Option(help="comma-separated labels; empty = all")] = "",
    max_frame_age_ms: Annotated[
        int | None, typer.Option(min=1, help="frame-age budget (default: the detector's)")
    ] = None,
) -> None:
    """Set a client's model and filters; the detector applies it on its next frames."""
    try:
        selector = ModelSelector(
            name=model, alias=alias if alias or version else "production", version=version
        )
    except ValidationError as exc:
        raise typer.BadParameter(f"{model}: {exc.errors()[0]['msg']}") from exc
    config = ClientConfig(
        client_id=client_id,
        model_name=selector.name,
        model_alias=selector.alias,
        model_version=selector.version,
        score_threshold=threshold,
        classes_of_interest=tuple(c.strip() for c in classes.split(",") if c.strip()),
        max_frame_age_ms=max_frame_age_ms,
    )
    store = _store()
    try:
        store.put_client_config(config)
    finally:
        store.close()
    typer.echo(f"{client_id}: {config.model_uri} threshold={threshold}")
