"""`vidpipe serve` with real processes: start, crash-restart within 10 s, status, stop.

Isolated from the shared stack and from anything else on the host: its own state directory
(supervisord, socket, logs), its own ports (a free block, via ``port_offset``), its own
Postgres database and Redis index, and its own Kafka broker (a private in-memory Tansu on a
free port), so its consumers join no group anyone else uses. S3, MongoDB and MLflow are
the shared ones (the detector reads the registered model; nothing is written to them).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

import vidpipe_cli.serve
import vidpipe_cli.stack
from infra.local import serve
from infra.local.health import maintenance_conninfo
from infra.local.processes import (
    ProcessSpec,
    StatePaths,
    StopPolicy,
    cmdline,
    pid_alive,
    port_open,
    spawn,
    stop,
)
from infra.local.programs import PROGRAMS, REPLICA_PORT_STEP, ServeOptions, plan
from infra.local.provision import create_topics, upgrade_database
from infra.local.services import tansu_binary
from infra.local.stack import DEFAULT_STATE_DIR, SERVICES, read_owned_pid
from vidpipe.settings import KafkaSettings, ServiceSettings
from vidpipe_cli.main import app

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

REDIS_INDEX = 4
RESTART_WITHIN_S = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_offset(detectors: int) -> int:
    """A port offset at which every port of ``detectors`` replicas and the rest is free."""
    for _ in range(50):
        offset = 20000 + 100 * int(uuid.uuid4().int % 300)
        ports = [p for prog in plan(detectors + 1, offset) for p in prog.ports]
        if not any(port_open("127.0.0.1", p) for p in ports):
            return offset
    raise RuntimeError("no free block of ports")


@dataclass(frozen=True)
class Isolated:
    paths: serve.ServePaths
    port_offset: int
    env: dict[str, str]


@pytest.fixture
def private_kafka(stack: None, tmp_path: Path) -> Iterator[str]:
    """An in-memory Tansu broker of this test's own, with vidpipe's topics."""
    port = _free_port()
    paths = StatePaths(tmp_path / "kafka")
    paths.create()
    listener = f"tcp://127.0.0.1:{port}"
    spec = ProcessSpec(
        argv=[
            str(tansu_binary(paths.log_file("kafka"))),
            "broker",
            "--cluster-id",
            f"serve-it-{port}",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
    )
    pid = spawn("kafka", spec, paths)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert time.monotonic() < deadline, "private broker did not listen"
            time.sleep(0.2)
        bootstrap = f"127.0.0.1:{port}"
        create_topics(ServiceSettings(kafka=KafkaSettings(bootstrap_servers=bootstrap)))
        yield bootstrap
    finally:
        stop("kafka", pid, StopPolicy("tansu"))


@pytest.fixture
def isolated(
    private_kafka: str,
    stack_settings: ServiceSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Isolated]:
    """Own database (migrated), Redis index, broker and state dir, in the environment that
    supervisord and its programs inherit. Serve is shut down afterwards whatever happens."""
    name = f"vidpipe_serve_{uuid.uuid4().hex[:8]}"
    admin = maintenance_conninfo(stack_settings)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    shared = urlsplit(stack_settings.postgres.dsn.get_secret_value())
    dsn = urlunsplit(shared._replace(path=f"/{name}"))
    upgrade_database(dsn)
    env = {
        "VIDPIPE_POSTGRES__DSN": dsn,
        "VIDPIPE_REDIS__URL": f"redis://127.0.0.1:6379/{REDIS_INDEX}",
        "VIDPIPE_KAFKA__BOOTSTRAP_SERVERS": private_kafka,
        "VIDPIPE_TORCH_THREADS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    paths = serve.ServePaths(tmp_path / "state")
    try:
        yield Isolated(paths, _free_offset(detectors=1), env)
    finally:
        serve.shutdown(paths)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _rows(paths: serve.ServePaths) -> dict[str, serve.ProgramStatus]:
    rows = serve.status(paths)
    assert rows is not None, "supervisord is not running"
    return {row.name: row for row in rows}


def _group_members(pgid: int) -> list[int]:
    """Every live process in process group ``pgid`` (a program and its children)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _shared_stack_pids() -> dict[str, int]:
    paths = StatePaths(DEFAULT_STATE_DIR)
    owned = {s.name: read_owned_pid(paths, s.name, s.policy, False) for s in SERVICES}
    return {name: pid for name, pid in owned.items() if pid is not None}


def test_serve_when_a_program_is_killed_then_it_runs_again_and_stop_leaves_nothing(
    isolated: Isolated, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = isolated.paths
    shared_before = _shared_stack_pids()
    # given every service served, with its own ports
    options = ServeOptions(detectors=1, port_offset=isolated.port_offset)
    programs = options.programs()
    rows = serve.start(options, paths, timeout_s=240)
    expected = {p.name for p in programs}
    assert {r.name for r in rows} == expected
    assert {spec.name for spec in PROGRAMS} <= {p.kind for p in programs}
    assert all(r.running and r.pid and r.restarts == 0 for r in rows)
    # each program got its own port, and the services use it
    detector = _rows(paths)["detector-1"]
    assert detector.metrics_port == 9102 + isolated.port_offset
    deadline = time.monotonic() + 240
    while not port_open("127.0.0.1", detector.metrics_port):
        assert time.monotonic() < deadline, "detector never served its metrics port"
        time.sleep(1)

    # when each program in turn is killed with SIGKILL
    for name in sorted(expected):
        before = _rows(paths)[name]
        assert before.pid is not None
        os.kill(before.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # then it is RUNNING again, as a new process, within 10 s, and counted as a restart
        while True:
            after = _rows(paths)[name]
            if after.running and after.pid not in (None, before.pid):
                break
            elapsed = time.monotonic() - killed_at
            assert elapsed < RESTART_WITHIN_S, f"{name} not running {elapsed:.1f} s after kill"
            time.sleep(0.2)
        log.info("%s RUNNING again %.1f s after SIGKILL", name, time.monotonic() - killed_at)
        assert after.pid is not None and pid_alive(after.pid, "python")
        deadline = time.monotonic() + 5
        while _rows(paths)[name].restarts != before.restarts + 1:
            assert time.monotonic() < deadline, f"{name}: restart not counted"
            time.sleep(0.2)

    # and `vidpipe status` shows every program with its restart, pid and port
    monkeypatch.setattr(vidpipe_cli.serve, "STATE_DIR", paths.state_dir)
    monkeypatch.setattr(vidpipe_cli.stack, "STATE_DIR", paths.state_dir)
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    for row in _rows(paths).values():
        line = next(x for x in result.output.splitlines() if f" {row.name} " in x)
        assert "RUNNING" in line and f"pid {row.pid}" in line and "restarts 1" in line

    # when the programs are paused (as a demo or a test session does), then resumed
    running = _rows(paths)
    paused = serve.pause(paths, keep=("dashboard",))
    # then all but the kept one stop, a pause is not counted as a restart, and all come back
    assert set(paused) == expected - {"dashboard"}
    assert {n: r.state for n, r in _rows(paths).items() if n != "dashboard"} == dict.fromkeys(
        paused, "STOPPED"
    )
    assert _rows(paths)["dashboard"].pid == running["dashboard"].pid
    serve.resume(paths, paused)
    resumed = serve.wait_running(paths, timeout_s=60)
    assert all(r.restarts == 1 for r in resumed)

    # when serve is asked again with two detectors
    again = serve.start(replace(options, detectors=2), paths, timeout_s=240)
    # then the second replica runs with the next port, and nothing else was restarted
    by_name = {r.name: r for r in again}
    assert by_name["detector-2"].running
    assert by_name["detector-2"].metrics_port == detector.metrics_port + REPLICA_PORT_STEP
    assert all(by_name[n].pid == r.pid for n, r in _rows(paths).items() if n != "detector-2")

    # when serve is stopped
    groups = {row.pid: cmdline(row.pid) for row in _rows(paths).values() if row.pid}
    members = {pid for pgid in groups for pid in _group_members(pgid)}
    supervisord = serve.supervisord_pid(paths)
    assert supervisord is not None
    assert serve.shutdown(paths)
    # then supervisord and every process it started are gone
    assert not pid_alive(supervisord, str(paths.conf))
    survivors = [pid for pid in members if Path(f"/proc/{pid}").exists() and cmdline(pid)]
    assert not [p for p in survivors if any(cmdline(p) == c for c in groups.values())]
    assert serve.status(paths) is None
    for program in programs:
        for port in program.ports:
            assert not port_open("127.0.0.1", port), f"{program.name} still listens on {port}"
    # and nothing else: the shared stack's processes still run
    for name, pid in shared_before.items():
        policy = next(s.policy for s in SERVICES if s.name == name)
        assert pid_alive(pid, policy.marker), f"{name} (pid {pid}) was stopped too"
