"""The ``vidpipe`` command: local infrastructure, services, models, clients, cameras,
datasets, reports, training and the demo. Each domain's commands live in their own module.
"""

from __future__ import annotations

import typer

from vidpipe_cli import (
    cameras,
    clients,
    datasets,
    demo,
    evaluate,
    models,
    run,
    serve,
    stack,
    train,
    users,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
stack.register(app)
run.register(app)
demo.register(app)
serve.register(app)
app.add_typer(models.app, name="models")
app.add_typer(clients.app, name="clients")
app.add_typer(cameras.app, name="cameras")
app.add_typer(datasets.app, name="datasets")
app.add_typer(evaluate.app, name="evaluate")
app.add_typer(train.app, name="train")
app.add_typer(users.app, name="users")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
