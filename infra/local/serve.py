"""`vidpipe serve`: every vidpipe service on this host under supervisord (PyPI ``supervisor``).

Layout under ``<state_dir>/serve/``: ``supervisord.conf`` (generated on every `serve`; no
secrets in it: programs inherit the environment of the `vidpipe serve` that started
supervisord), ``supervisord.pid``, ``supervisor.sock`` (XML-RPC, mode 0700),
``programs.json`` (each program's ports, for `vidpipe status`) and ``restarts.json`` (kept
by the ``serve-events`` listener, :mod:`infra.local.serve_events`). Logs go to
``<state_dir>/log/serve/<program>.log``, rotated at 20 MB, 5 kept.

Supervision policy: ``autorestart`` always; a program must stay up ``startsecs`` (5 s) to
count as started, and one that dies sooner is retried ``startretries`` (5) times with
supervisord's backoff (1 s, 2 s, ... longer each attempt) before it is marked FATAL.
Stopping sends SIGTERM to the program's whole process group (the report job's Spark child
too), and SIGKILL to the group after ``stopwaitsecs``.

supervisord keeps no restart counter, so an event listener counts, per program, the
``PROCESS_STATE_EXITED`` events (a running program died; with ``autorestart`` each one is
followed by a restart) and ``PROCESS_STATE_BACKOFF`` events (a start failed and is retried).
A stop asked for (`vidpipe down`, a paused program) is ``STOPPING -> STOPPED`` and is not
counted. The counts restart at zero with each new supervisord.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from signal import SIGKILL

from supervisor.xmlrpc import SupervisorTransport

from infra.local.processes import (
    StackError,
    StopPolicy,
    cmdline,
    pid_alive,
    port_open,
    stop,
    tail,
)
from infra.local.programs import Program, ServeOptions
from infra.local.serve_config import EVENTS_PROGRAM, ServePaths, render_config

__all__ = [
    "EVENTS_PROGRAM",
    "ProgramStatus",
    "ServePaths",
    "pause",
    "paused",
    "render_config",
    "resume",
    "saved_options",
    "shutdown",
    "start",
    "status",
    "supervisord_pid",
    "wait_running",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgramStatus:
    """One row of `vidpipe status` for a served program. ``uptime_s`` is None unless
    RUNNING; ``metrics_port`` is its Prometheus port, ``http_port`` the dashboard's."""

    name: str
    state: str
    pid: int | None
    uptime_s: float | None
    restarts: int
    metrics_port: int | None
    http_port: int | None
    #: supervisord's ``spawnerr`` (why it could not start), if any
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


def rpc(paths: ServePaths) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy to supervisord over its UNIX socket."""
    transport = SupervisorTransport(None, None, f"unix://{paths.socket}")
    # The host part is ignored: the transport connects to the socket.
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def supervisord_pid(paths: ServePaths) -> int | None:
    """The PID of this instance's supervisord if it runs, else None."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid, str(paths.conf)) else None


def _infos(paths: ServePaths) -> list[dict[str, object]]:
    infos: list[dict[str, object]] = rpc(paths).supervisor.getAllProcessInfo()  # type: ignore[assignment]
    return [info for info in infos if info["group"] != EVENTS_PROGRAM]


def _read_json(path: Path) -> dict[str, object]:
    try:
        loaded = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def status(paths: ServePaths) -> list[ProgramStatus] | None:
    """Every served program, or None when this instance's supervisord is not running.

    Raises:
        StackError: supervisord runs but does not answer on its socket.
    """
    if supervisord_pid(paths) is None:
        return None
    try:
        infos = _infos(paths)
    except (OSError, xmlrpc.client.Fault) as exc:
        raise StackError(f"supervisord does not answer on {paths.socket}: {exc}") from exc
    ports = _read_json(paths.programs_file)
    restarts = _read_json(paths.restarts_file)
    rows = []
    for info in infos:
        name = str(info["name"])
        state = str(info["statename"])
        pid = int(info["pid"]) or None  # type: ignore[call-overload]
        running = state == "RUNNING"
        uptime = float(info["now"]) - float(info["start"]) if running else None  # type: ignore[arg-type]
        own: dict[str, int | None] = ports.get(name, {})  # type: ignore[assignment]
        rows.append(
            ProgramStatus(
                name=name,
                state=state,
                pid=pid if running else None,
                uptime_s=uptime,
                restarts=int(restarts.get(name, 0)),  # type: ignore[call-overload]
                metrics_port=own.get("metrics_port"),
                http_port=own.get("http_port"),
                detail=str(info.get("spawnerr") or ""),
            )
        )
    return rows


def _check_ports(programs: Sequence[Program], running: set[str]) -> None:
    taken = [
        f"{program.name} :{port}"
        for program in programs
        if program.name not in running
        for port in program.ports
        if port_open("127.0.0.1", port)
    ]
    if taken:
        raise StackError(
            "ports already in use by another process: "
            + ", ".join(taken)
            + " (stop it, or give `vidpipe serve --port-offset N`)"
        )


def _private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def _write_config(options: ServeOptions, programs: Sequence[Program], paths: ServePaths) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    _private(paths.conf, render_config(programs, paths))
    _private(paths.options_file, json.dumps(asdict(options), indent=2) + "\n")
    ports = {p.name: {"metrics_port": p.metrics_port, "http_port": p.http_port} for p in programs}
    paths.programs_file.write_text(json.dumps(ports, indent=2) + "\n")


def _launch(paths: ServePaths, foreground: bool) -> None:
    argv = [sys.executable, "-m", "supervisor.supervisord", "-c", str(paths.conf)]
    if foreground:
        os.execv(sys.executable, [*argv, "--nodaemon"])
    # supervisord forks into the background; the first process exits once it has.
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise StackError(f"supervisord did not start: {result.stderr.strip() or result.stdout}")


def _apply(paths: ServePaths) -> None:
    """Make a running supervisord adopt the rewritten configuration (`supervisorctl update`)."""
    supervisor = rpc(paths).supervisor
    result: list[list[list[str]]] = supervisor.reloadConfig()  # type: ignore[assignment]
    added, changed, removed = result[0]
    for group in (*removed, *changed):
        try:
            supervisor.stopProcessGroup(group)
        except xmlrpc.client.Fault as exc:
            logger.warning("stopping %s: %s", group, exc.faultString)
        supervisor.removeProcessGroup(group)
    for group in (*changed, *added):
        supervisor.addProcessGroup(group)
    if added or changed or removed:
        logger.info("serve: added %s, changed %s, removed %s", added, changed, removed)


def _start_stopped(paths: ServePaths, names: Iterable[str] | None = None) -> None:
    supervisor = rpc(paths).supervisor
    wanted = None if names is None else set(names)
    for info in _infos(paths):
        name = str(info["name"])
        if info["statename"] in ("STOPPED", "EXITED", "FATAL") and (
            wanted is None or name in wanted
        ):
            supervisor.startProcess(name, False)


def wait_running(paths: ServePaths, timeout_s: float) -> list[ProgramStatus]:
    """Wait until every program is RUNNING.

    Raises:
        StackError: one went FATAL (its log's tail included), or ``timeout_s`` passed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        rows = status(paths) or []
        fatal = [r for r in rows if r.state == "FATAL"]
        if fatal:
            name = fatal[0].name
            raise StackError(
                f"{name} keeps exiting ({fatal[0].detail or 'FATAL'}); see "
                f"{paths.log_file(name)}:\n{tail(paths.log_file(name))}"
            )
        if rows and all(r.running for r in rows):
            return rows
        if time.monotonic() > deadline:
            waiting = ", ".join(f"{r.name} {r.state}" for r in rows if not r.running)
            raise StackError(f"not RUNNING after {timeout_s:.0f} s: {waiting}")
        time.sleep(0.5)


def saved_options(paths: ServePaths) -> ServeOptions | None:
    """The options of the last `serve` start for this state directory, if any."""
    saved = _read_json(paths.options_file)
    if not saved:
        return None
    return ServeOptions(
        detectors=int(saved.get("detectors", 1)),  # type: ignore[call-overload]
        port_offset=int(saved.get("port_offset", 0)),  # type: ignore[call-overload]
        extra_env=saved.get("extra_env") or {},  # type: ignore[arg-type]
    )


def start(
    options: ServeOptions,
    paths: ServePaths,
    foreground: bool = False,
    timeout_s: float = 120.0,
) -> list[ProgramStatus]:
    """Serve ``options.programs()``: start supervisord, or make a running one adopt the new program
    list (added, changed and removed programs; stopped ones started again). Returns once
    every program is RUNNING. With ``foreground``, supervisord replaces this process.

    Raises:
        StackError: a port is taken by another process, supervisord did not start, or a
        program did not reach RUNNING (see :func:`wait_running`).
    """
    programs = options.programs()
    running_before = supervisord_pid(paths) is not None
    current = {r.name for r in status(paths) or [] if r.running} if running_before else set()
    _check_ports(programs, current)
    _write_config(options, programs, paths)
    if running_before:
        if foreground:
            raise StackError(f"supervisord already runs for {paths.state_dir}; stop it first")
        _apply(paths)
        _start_stopped(paths)
    else:
        paths.restarts_file.unlink(missing_ok=True)
        paths.socket.unlink(missing_ok=True)
        _launch(paths, foreground)
        deadline = time.monotonic() + 30
        while supervisord_pid(paths) is None or not paths.socket.exists():
            if time.monotonic() > deadline:
                raise StackError(
                    f"supervisord did not come up; see {paths.log_dir / 'supervisord.log'}"
                )
            time.sleep(0.2)
    return wait_running(paths, timeout_s)


def pause(paths: ServePaths, keep: Iterable[str] = ()) -> list[str]:
    """Stop the running programs except those whose kind or name is in ``keep``; returns
    the names stopped, for :func:`resume`. Nothing happens when serve is not running."""
    rows = status(paths) or []
    kept = set(keep)
    names = [r.name for r in rows if r.running and r.name not in kept and _kind(r.name) not in kept]
    supervisor = rpc(paths).supervisor
    for name in names:
        supervisor.stopProcess(name, True)
        logger.info("serve: paused %s", name)
    return names


def resume(paths: ServePaths, names: Iterable[str]) -> None:
    """Start again what :func:`pause` stopped (if serve still runs)."""
    names = list(names)
    if names and supervisord_pid(paths) is not None:
        _start_stopped(paths, names)
        logger.info("serve: resumed %s", ", ".join(names))


@contextlib.contextmanager
def paused(paths: ServePaths, keep: Iterable[str] = ()) -> Iterator[list[str]]:
    """:func:`pause` for the duration of a ``with`` block, then :func:`resume`."""
    names = pause(paths, keep)
    try:
        yield names
    finally:
        resume(paths, names)


def _kind(name: str) -> str:
    base, _, replica = name.rpartition("-")
    return base if base and replica.isdigit() else name


def shutdown(paths: ServePaths, timeout_s: float = 90.0) -> bool:
    """Stop supervisord and every program it runs (SIGTERM to each process group, SIGKILL
    after ``stopwaitsecs``). A program left behind by a supervisord that had to be killed is
    killed too. Returns whether there was anything to stop."""
    pid = supervisord_pid(paths)
    if pid is None:
        return False
    try:
        infos = _infos(paths)
    except (OSError, xmlrpc.client.Fault):
        infos = []
    # What each child ran, so a PID reused after supervisord exits is never signalled.
    children = [(int(i["pid"]), str(i["name"])) for i in infos if i["pid"]]  # type: ignore[call-overload]
    commands = {child: cmdline(child) for child, _ in children}
    stop("supervisord", pid, StopPolicy(str(paths.conf), whole_group=False), timeout_s)
    for child, name in children:
        if commands[child] and pid_alive(child, commands[child]):
            logger.warning("serve: %s (pid %d) outlived supervisord; killing it", name, child)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child, SIGKILL)
    paths.pid_file.unlink(missing_ok=True)
    return True
