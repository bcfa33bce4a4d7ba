"""What `vidpipe serve` runs on one host: the table of programs and the ports each gets.

One row of :data:`PROGRAMS` per program; adding a service (the camera agent, say) is one
more row. Each row becomes one or more supervisord programs (``replicated`` rows: one per
replica, named ``detector-1``, ``detector-2``, ...). Every program inherits the environment
of `vidpipe serve` (the same ``VIDPIPE_*`` variables compose and Kubernetes set) plus its
own ports. Default ports are the services' own defaults (``metrics_port`` in each service's
settings, the dashboard's ``port``); replica ``i`` (from 1) of a replicated program adds
``REPLICA_PORT_STEP * (i - 1)``, and ``port_offset`` moves every port of one serve instance
(a second instance on the same host, or the integration test).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from services import SERVICES

#: glibc keeps freed memory instead of returning it to the OS on every tensor op; measured
#: ~2x model throughput at batch 8 on CPU (see benchmarks/README.md).
DETECTOR_CPU_ENV: Mapping[str, str] = {
    "MALLOC_TRIM_THRESHOLD_": "100000000000",
    "MALLOC_TOP_PAD_": "1000000000",
}

#: Schedule of the report job: the Kubernetes CronJob's (deploy/k8s/base/reports.yaml).
REPORT_SCHEDULE = "5 * * * *"
#: The window each report run covers: the hour that just closed and the one before.
REPORT_SINCE = "2h"
#: Schedule of the retention janitor: the Kubernetes CronJob's (deploy/k8s/base/janitor.yaml).
JANITOR_SCHEDULE = "35 * * * *"
REPLICA_PORT_STEP = 10


@dataclass(frozen=True)
class ProgramSpec:
    """One kind of program: how to start it (arguments after the Python interpreter), its
    default ports, extra environment, and whether `vidpipe serve --detectors N` replicates it.

    ``http_port`` is a port the program serves its own HTTP on (``VIDPIPE_PORT``);
    ``metrics_port`` its Prometheus ``/metrics`` (``VIDPIPE_METRICS_PORT``).
    """

    name: str
    args: tuple[str, ...]
    metrics_port: int | None = None
    http_port: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    replicated: bool = False


def _service(name: str) -> tuple[str, ...]:
    return ("-m", SERVICES[name])


PROGRAMS: tuple[ProgramSpec, ...] = (
    ProgramSpec("agent", _service("agent"), 9101),
    ProgramSpec("detector", _service("detector"), 9102, env=DETECTOR_CPU_ENV, replicated=True),
    ProgramSpec("renderer", _service("renderer"), 9103),
    ProgramSpec("metrics-sink", _service("metrics-sink"), 9104),
    ProgramSpec("status-sink", _service("status-sink"), 9105),
    ProgramSpec("trainer", _service("trainer"), 9106),
    ProgramSpec("dashboard", _service("dashboard"), http_port=8000),
    ProgramSpec(
        "reports",
        (
            "-m",
            "infra.local.cron",
            "--schedule",
            REPORT_SCHEDULE,
            "--",
            sys.executable,
            "-m",
            "services.reports",
            "--since",
            REPORT_SINCE,
        ),
    ),
    ProgramSpec(
        "janitor",
        (
            "-m",
            "infra.local.cron",
            "--schedule",
            JANITOR_SCHEDULE,
            "--",
            sys.executable,
            *_service("janitor"),
        ),
    ),
)


@dataclass(frozen=True)
class Program:
    """One supervisord program: its name, full command line, own environment and ports."""

    name: str
    kind: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    metrics_port: int | None
    http_port: int | None

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(p for p in (self.http_port, self.metrics_port) if p is not None)


@dataclass(frozen=True)
class ServeOptions:
    """What `vidpipe serve` was asked for; kept in ``serve/options.json`` so a later start
    (the demo's, say) keeps a running instance's replicas and ports."""

    detectors: int = 1
    port_offset: int = 0
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def programs(self) -> list[Program]:
        return plan(self.detectors, self.port_offset, self.extra_env)


def _shift(port: int | None, by: int) -> int | None:
    return None if port is None else port + by


def plan(
    detectors: int = 1,
    port_offset: int = 0,
    extra_env: Mapping[str, Mapping[str, str]] | None = None,
    specs: tuple[ProgramSpec, ...] = PROGRAMS,
) -> list[Program]:
    """The programs for one host: ``detectors`` replicas of each replicated row (one consumer
    group: they share the partitions), one of every other row. ``extra_env`` adds
    environment per row name (e.g. ``{"dashboard": {...}}``).

    Raises:
        ValueError: ``detectors`` < 1, or a port outside 1..65535.
    """
    if detectors < 1:
        raise ValueError(f"detectors must be at least 1, not {detectors}")
    programs = []
    for spec in specs:
        replicas = detectors if spec.replicated else 1
        for index in range(replicas):
            step = REPLICA_PORT_STEP * index
            metrics = _shift(spec.metrics_port, port_offset + step)
            http = _shift(spec.http_port, port_offset + step)
            for port in (metrics, http):
                if port is not None and not 0 < port < 65536:
                    raise ValueError(f"{spec.name}: port {port} out of range")
            env = dict(spec.env)
            if metrics is not None:
                env["VIDPIPE_METRICS_PORT"] = str(metrics)
            if http is not None:
                env["VIDPIPE_PORT"] = str(http)
            env.update((extra_env or {}).get(spec.name, {}))
            name = f"{spec.name}-{index + 1}" if spec.replicated else spec.name
            argv = (sys.executable, *spec.args)
            programs.append(Program(name, spec.name, argv, env, metrics, http))
    return programs
