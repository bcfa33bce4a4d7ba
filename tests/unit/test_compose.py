"""docker-compose.yml against the code (no Docker engine needed): every vidpipe container's
command is one the ``vidpipe`` CLI accepts, and the CLI starts in an image that has only the
core dependencies plus its service's extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from vidpipe_cli.main import app

REPO = Path(__file__).resolve().parents[2]
#: What the core install lacks (optional extras): importing any of them must not be needed
#: to start the CLI.
OPTIONAL = ("torch", "torchvision", "mlflow", "pyspark", "fastapi", "argon2", "av", "jinja2")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def _vidpipe_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _compose()["services"].items()
        if service.get("build", {}).get("dockerfile") == "docker/vidpipe.Dockerfile"
    }


def test_compose_runs_every_vidpipe_service() -> None:
    commands = {tuple(s["command"]) for s in _vidpipe_services().values()}
    for service in ("decoder", "detector", "renderer", "metrics-sink", "dashboard", "trainer"):
        assert ("run", service) in commands
    assert ("provision",) in commands


@pytest.mark.parametrize("name", sorted(_vidpipe_services()))
def test_compose_command_when_parsed_by_the_cli_then_accepted(name: str) -> None:
    command = list(_vidpipe_services()[name]["command"])
    # --help is eager: the parser checks the command path and option names, runs nothing
    done = CliRunner().invoke(app, [*command, "--help"])
    assert done.exit_code == 0, f"{name}: vidpipe {' '.join(command)}\n{done.output}"


def test_compose_decoder_gets_its_camera_from_the_environment() -> None:
    decoder = _vidpipe_services()["decoder"]
    assert "VIDPIPE_CAMERA_ID" in decoder["environment"]


def test_cli_when_optional_extras_absent_then_it_still_starts() -> None:
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {OPTIONAL!r}:\n"
        "            raise ImportError(f'{name} is not installed in this image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from vidpipe_cli.main import app\n"
        "app(['run', '--help'], standalone_mode=False)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocker],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "decoder" in done.stdout and "metrics-sink" in done.stdout
