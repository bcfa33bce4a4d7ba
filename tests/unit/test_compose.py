"""docker-compose.yml against the code (no Docker engine needed): every vidpipe container's
command is one the ``vidpipe`` CLI accepts, every ``VIDPIPE_*`` variable it sets is a field
of that command's settings class (and valid there), every ``${VAR}`` it reads is in
.env.example, the inference profiles are wired, and the CLI starts in an image that has only
the core dependencies plus its service's extra."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from services import SERVICES
from tests.unit.test_k8s import is_field, settings_class
from vidpipe_cli.main import app

REPO = Path(__file__).resolve().parents[2]
#: What the core install lacks (optional extras): importing any of them must not be needed
#: to start the CLI.
OPTIONAL = (
    "torch", "torchvision", "mlflow", "openvino", "nncf", "pycocotools", "skimage", "pyspark",
    "fastapi", "argon2", "jinja2", "av", "kserve",
)  # fmt: skip
#: What each service's image adds to the core (its pyproject extra; mlflow brings fastapi
#: and jinja2 along).
MLFLOW = ("mlflow", "fastapi", "jinja2")
EXTRAS = {
    "decoder": (),
    "detector": ("torch", "torchvision", "openvino", "nncf", "kserve", *MLFLOW),
    "model_server": ("torch", "torchvision", "openvino", "nncf", "kserve", *MLFLOW),
    "renderer": ("av",),
    "metrics_sink": (),
    "status_sink": (),
    "janitor": (),
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
    for service in SERVICES:
        assert ("run", service) in commands
    assert ("provision",) in commands
    assert ("evaluate", "--since", "2h") in commands  # the report job


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
    "janitor": {(b, a) for b in ("frames", "annotations", "renders", "requests")
                for a in ("s3:DeleteObject", "s3:ListBucket")},
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
        if name == "model-server":  # it reads the registry only: no Kafka credentials
            assert not [k for k in env if k.startswith("VIDPIPE_KAFKA")]
            assert env["MLFLOW_TRACKING_USERNAME"] and env["MLFLOW_TRACKING_PASSWORD"]
            continue
        assert env["VIDPIPE_KAFKA__SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
        assert env["VIDPIPE_KAFKA__SASL_PASSWORD"].startswith("${KAFKA_VIDPIPE_PASSWORD:?"), name
        assert env["MLFLOW_TRACKING_USERNAME"] and env["MLFLOW_TRACKING_PASSWORD"], name
        assert env["VIDPIPE_CAMERAS__KEYS"].startswith("${VIDPIPE_CAMERA_KEYS:?"), name
    dashboard = _vidpipe_services()["dashboard"]["environment"]
    assert "VIDPIPE_SECURE_COOKIES" not in dashboard  # on by default off loopback


# -- variables, settings, profiles, health ---------------------------------------------------

#: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}`` (compose's interpolation forms used)
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-?])(?P<arg>[^}]*))?\}")


def _env_example() -> dict[str, str]:
    lines = (REPO / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if "=" in line and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


#: sample values for the required secrets (empty in .env.example) when settings are built
_REQUIRED_SAMPLES = {"VIDPIPE_CAMERA_KEYS": '["sample-key"]'}


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """``value`` as compose would interpolate it with ``variables``."""

    def one(match: re.Match[str]) -> str:
        found = variables.get(match["name"], "")
        if found:
            return found
        if match["op"] == "?":
            return _REQUIRED_SAMPLES.get(match["name"], "sample-secret")
        return match["arg"] or ""

    return _VARIABLE.sub(one, value)


def test_compose_variables_when_referenced_then_listed_in_env_example() -> None:
    referenced = {m["name"] for m in _VARIABLE.finditer((REPO / "docker-compose.yml").read_text())}
    listed = _env_example()
    assert sorted(referenced - set(listed)) == []
    assert sorted(set(listed) - referenced - {"COMPOSE_PROFILES"}) == []  # nothing stale


def test_compose_env_when_vidpipe_keys_then_fields_its_settings_know() -> None:
    unknown = []
    for name, service in _vidpipe_services().items():
        cls = settings_class({"args": service["command"]})
        assert cls is not None, name
        for key in service["environment"]:
            if key.startswith("VIDPIPE_") and not is_field(cls, key):
                unknown.append(f"{name}: {key}")
    assert unknown == []


def test_compose_env_when_read_by_its_settings_then_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("VIDPIPE_")]:
        monkeypatch.delenv(key)
    variables = _env_example()
    for name, service in _vidpipe_services().items():
        cls = settings_class({"args": service["command"]})
        assert cls is not None
        with monkeypatch.context() as patch:
            for key, value in service["environment"].items():
                if key.startswith("VIDPIPE_"):
                    patch.setenv(key, _interpolate(str(value), variables))
            try:
                cls()
            except ValidationError as exc:
                pytest.fail(f"{name}: {exc}")


def test_compose_profiles_when_remote_then_detector_sends_to_the_model_server() -> None:
    services = _compose()["services"]
    assert _env_example()["COMPOSE_PROFILES"] == "local"  # the default placement
    assert services["detector"]["profiles"] == ["local"]
    assert "VIDPIPE_BACKEND" not in services["detector"]["environment"]  # auto: in-process
    remote, server = services["detector-remote"], services["model-server"]
    assert remote["profiles"] == server["profiles"] == ["remote"]
    assert remote["command"] == services["detector"]["command"]
    env = remote["environment"]
    assert env["VIDPIPE_BACKEND"] == "remote"
    host, port = _interpolate(env["VIDPIPE_INFERENCE_URL"], {}).split(":")
    assert host == "model-server" and port == server["environment"]["VIDPIPE_GRPC_PORT"]
    assert port in server["expose"] and "ports" not in server  # compose network only
    assert remote["depends_on"]["model-server"]["condition"] == "service_healthy"
    assert server["build"]["args"]["EXTRAS"] == "model-server"


def test_compose_when_long_running_then_health_checked_and_restarted() -> None:
    for name, service in _compose()["services"].items():
        if service.get("restart") == "no":
            continue  # one-shot: provision, minio-setup, the report job
        assert service.get("restart") == "unless-stopped", name
        assert "healthcheck" in service, name
        env = service.get("environment", {})
        port = env.get("VIDPIPE_METRICS_PORT") if isinstance(env, dict) else None
        if port is not None:  # a vidpipe service: probed on its own metrics port
            assert f"127.0.0.1:{port}/" in " ".join(service["healthcheck"]["test"]), name


def test_compose_report_job_when_run_then_one_shot_with_java() -> None:
    reports = _compose()["services"]["reports"]
    assert reports["profiles"] == ["report"] and reports["restart"] == "no"
    assert "openjdk" in reports["build"]["args"]["SYSTEM_PACKAGES"]
    assert reports["build"]["args"]["EXTRAS"] == "evaluator"
