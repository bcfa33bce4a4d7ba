"""docker-compose.yml against the code (no Docker engine needed): every vidpipe container's
command is one the ``vidpipe`` CLI accepts, and the CLI starts in an image that has only the
core dependencies plus its service's extra."""

from __future__ import annotations

import json
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
OPTIONAL = (
    "torch", "torchvision", "mlflow", "openvino", "nncf", "pycocotools", "skimage", "pyspark",
    "fastapi", "argon2", "jinja2", "av",
)  # fmt: skip
#: What each service's image adds to the core (its pyproject extra; mlflow brings fastapi
#: and jinja2 along).
MLFLOW = ("mlflow", "fastapi", "jinja2")
EXTRAS = {
    "decoder": (),
    "detector": ("torch", "torchvision", "openvino", "nncf", *MLFLOW),
    "renderer": ("av",),
    "metrics_sink": (),
    "dashboard": ("argon2", *MLFLOW),
    "trainer": ("torch", "torchvision", "openvino", "nncf", "pycocotools", "skimage", *MLFLOW),
}


def _blocking(allowed: tuple[str, ...], then: str) -> str:
    """Python source that makes the optional packages not in ``allowed`` unimportable, then
    runs ``then``."""
    blocked = tuple(p for p in OPTIONAL if p not in allowed)
    return (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ImportError(f'{name} is not installed in this image')\n"
        "sys.meta_path.insert(0, Block())\n" + then
    )


def _python(source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", source],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


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
    source = "from vidpipe_cli.main import app\napp(['run', '--help'], standalone_mode=False)\n"
    done = _python(_blocking((), source))
    assert done.returncode == 0, done.stderr
    assert "decoder" in done.stdout and "metrics-sink" in done.stdout


@pytest.mark.parametrize(("service", "extra"), sorted(EXTRAS.items()))
def test_service_when_only_its_extra_installed_then_it_imports(
    service: str, extra: tuple[str, ...]
) -> None:
    done = _python(_blocking(extra, f"import services.{service}.__main__\n"))
    assert done.returncode == 0, done.stderr


#: what each vidpipe service may do in object storage: (bucket, action) pairs
S3_NEEDS = {
    "decoder": {("frames", "s3:PutObject")},
    "detector": {("frames", "s3:GetObject"), ("annotations", "s3:PutObject"),
                 ("requests", "s3:GetObject"), ("requests", "s3:PutObject")},
    "renderer": {("frames", "s3:GetObject"), ("renders", "s3:GetObject"),
                 ("renders", "s3:PutObject"), ("renders", "s3:ListBucket"),
                 ("requests", "s3:GetObject"), ("requests", "s3:PutObject")},
    "dashboard": {(b, "s3:GetObject")
                  for b in ("frames", "annotations", "renders", "datasets", "requests")}
    | {(b, "s3:ListBucket") for b in ("annotations", "renders", "datasets")}
    | {("requests", "s3:PutObject")},
    "trainer": {("datasets", "s3:GetObject"), ("datasets", "s3:ListBucket")},
}  # fmt: skip


def _granted(policy: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (resource.removeprefix("arn:aws:s3:::").split("/")[0], action)
        for statement in policy["Statement"]
        for action in statement["Action"]
        for resource in statement["Resource"]
    }


def test_compose_when_services_reach_s3_then_each_with_its_own_least_privilege_user() -> None:
    compose = _compose()
    setup = compose["services"]["minio-setup"]
    created = {c["source"].removeprefix("minio-policy-") for c in setup["configs"]}
    for name, needs in S3_NEEDS.items():
        env = _vidpipe_services()[name]["environment"]
        assert env["VIDPIPE_S3__ACCESS_KEY"] == name, name  # not MinIO's root user
        assert name in created
        policy = json.loads(compose["configs"][f"minio-policy-{name}"]["content"])
        assert _granted(policy) == needs, name
    assert _vidpipe_services()["metrics-sink"]["environment"]["VIDPIPE_S3__ACCESS_KEY"] == "none"


def test_compose_when_services_reach_kafka_and_mlflow_then_they_authenticate() -> None:
    compose = _compose()
    kafka = compose["services"]["kafka"]["environment"]
    listeners = kafka["KAFKA_LISTENERS"].split(",")
    assert "SASL_PLAINTEXT://:9092" in listeners  # clients only over SASL; the rest loopback
    assert all(entry.split("://")[1].startswith("localhost:") for entry in listeners[1:])
    assert kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert "SCRAM-SHA-512" in " ".join(compose["services"]["kafka"]["command"])
    mlflow = compose["services"]["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    for name, service in _vidpipe_services().items():
        env = service["environment"]
        assert env["VIDPIPE_KAFKA__SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
        assert env["VIDPIPE_KAFKA__SASL_PASSWORD"].startswith("${KAFKA_VIDPIPE_PASSWORD:?"), name
        assert env["MLFLOW_TRACKING_USERNAME"] and env["MLFLOW_TRACKING_PASSWORD"], name
        assert env["VIDPIPE_CAMERAS__KEYS"].startswith("${VIDPIPE_CAMERA_KEYS:?"), name
    dashboard = _vidpipe_services()["dashboard"]["environment"]
    assert "VIDPIPE_SECURE_COOKIES" not in dashboard  # on by default off loopback
