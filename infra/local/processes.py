"""Processes of the local stack: detached infrastructure (spawn, PID files, liveness, stop)
and vidpipe service processes run by the demo and the tests (:func:`start_service`).

Layout under the state directory (default ``<repo>/var``):
``run/<name>.pid`` (one decimal PID), ``log/<name>.log`` (stdout and stderr, appended),
``data/<name>/`` (the service's files). A PID file is trusted only while that PID is alive,
not a zombie, and its command line still contains the service's ``marker``; anything else
is a stale file and is removed, so a reused PID is never signalled.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from services import SERVICES

logger = logging.getLogger(__name__)

#: Children spawned by this interpreter; polling them reaps zombies when the same process
#: that ran `up` later runs `down` (tests do), where ``kill(pid, 0)`` would still succeed.
_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


class StackError(RuntimeError):
    """A local service could not be installed, started, provisioned or stopped."""


@dataclass(frozen=True)
class StatePaths:
    """Where the local stack keeps PID files, logs and data."""

    root: Path

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def data_dir(self, name: str) -> Path:
        return self.data_root / name

    def create(self) -> None:
        for directory in (self.run_dir, self.log_dir, self.data_root):
            directory.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class StopPolicy:
    """How a service is asked to stop.

    ``whole_group`` signals the process group (the service leads its own session), which
    also reaches worker children such as MLflow's uvicorn. PostgreSQL wants SIGINT ("fast
    shutdown") on the postmaster alone, which then stops its own backends.
    """

    marker: str
    stop_signal: int = signal.SIGTERM
    whole_group: bool = True


@dataclass(frozen=True)
class ProcessSpec:
    """A command line to run detached: argv, extra environment, and an optional user."""

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds within ``timeout_s``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3 follows the parenthesised command name, which may itself contain spaces.
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def cmdline(pid: int) -> str:
    """The command line of ``pid``, arguments joined by spaces (empty if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def pid_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs, is not a zombie, and its command line contains ``marker``."""
    child = _SPAWNED.get(pid)
    if child is not None:
        # Our own unreaped child cannot have had its PID reused, and right after exec its
        # /proc cmdline can still be empty (the kernel fills it in after close-on-exec fires).
        if child.poll() is None:
            return True
        del _SPAWNED[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (postgres)
    return not _is_zombie(pid) and marker in cmdline(pid)


def read_owned_pid(
    paths: StatePaths, name: str, policy: StopPolicy, remove_stale: bool = True
) -> int | None:
    """The PID from ``run/<name>.pid`` if that process is still ours, else None.

    A stale or unreadable PID file is removed unless ``remove_stale`` is False.
    """
    pid_file = paths.pid_file(name)
    try:
        pid = int(pid_file.read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        logger.warning("%s: ignoring unreadable PID file %s", name, pid_file)
        pid = None
    if pid is not None and pid_alive(pid, policy.marker):
        return pid
    if remove_stale:
        pid_file.unlink(missing_ok=True)
    return None


def spawn(name: str, spec: ProcessSpec, paths: StatePaths) -> int:
    """Start ``spec`` in its own session with output appended to ``log/<name>.log``.

    Writes ``run/<name>.pid`` and returns the PID. Raises StackError if exec fails.
    """
    log_file = paths.log_file(name)
    env = {**os.environ, **spec.env}
    with log_file.open("ab") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"=== {stamp} vidpipe up: {' '.join(spec.argv)}\n".encode())
        log.flush()
        try:
            child = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=spec.cwd,
                user=spec.user,
                start_new_session=True,
            )
        except OSError as exc:
            raise StackError(f"{name}: cannot run {spec.argv[0]}: {exc}") from exc
    _SPAWNED[child.pid] = child
    paths.pid_file(name).write_text(f"{child.pid}\n")
    return child.pid


def exit_code(pid: int) -> int | None:
    """The exit status of a child spawned here that has already exited, else None."""
    child = _SPAWNED.get(pid)
    return None if child is None else child.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, sig: int, whole_group: bool) -> None:
    try:
        if whole_group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop(name: str, pid: int, policy: StopPolicy, timeout_s: float = 15.0) -> None:
    """Send the stop signal, wait up to ``timeout_s``, then SIGKILL the whole process group.

    ``pid`` leads its own process group (spawned with a new session).
    """
    _signal(pid, policy.stop_signal, policy.whole_group)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leader_gone = not pid_alive(pid, policy.marker)
        if leader_gone and not (policy.whole_group and _group_alive(pid)):
            return
        time.sleep(0.1)
    logger.warning(
        "%s: still running %.0f s after signal %d; sending SIGKILL",
        name,
        timeout_s,
        policy.stop_signal,
    )
    _signal(pid, signal.SIGKILL, whole_group=True)
    deadline = time.monotonic() + 5.0
    while pid_alive(pid, policy.marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid, policy.marker):
        raise StackError(f"{name}: PID {pid} survived SIGKILL")


@contextmanager
def exclusive(paths: StatePaths) -> Iterator[None]:
    """Serialise `up`/`down` across processes (two test sessions starting the stack at once)."""
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    with (paths.run_dir / "stack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ServiceProcess:
    """A vidpipe service running as a child process (see :func:`start_service`)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    #: where this process's output starts in the (appended) log file
    log_offset: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait up to ``timeout_s`` for a clean exit, then SIGKILL. Returns the
        exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("%s ignored SIGTERM for %.0f s; killing it", self.name, timeout_s)
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL: no clean-up, as in a crash."""
        self.popen.kill()
        self.popen.wait()

    def wait_logged(self, text: str, timeout_s: float) -> None:
        """Wait until the process's log holds ``text`` (e.g. "detector started").

        Raises:
            StackError: the process exited, or ``timeout_s`` passed first.
        """
        deadline = time.monotonic() + timeout_s
        while text.encode() not in self.log_path.read_bytes()[self.log_offset :]:
            if not self.alive():
                raise StackError(f"{self.name} exited before logging {text!r}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise StackError(f"{self.name} did not log {text!r} in {timeout_s:.0f} s")
            time.sleep(0.2)

    def wait(self, timeout_s: float) -> int | None:
        """The exit code once the process has exited, or ``None`` after ``timeout_s``."""
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None


def start_service(
    name: str, log_dir: Path, env: Mapping[str, str] | None = None, tag: str = ""
) -> ServiceProcess:
    """Start service ``name`` (a key of :data:`services.SERVICES`) as
    ``python -m services.<module>`` with extra ``VIDPIPE_*`` environment, in its own
    session, logging to ``<log_dir>/<name><tag>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}{tag}.log"
    with log_path.open("ab") as log_file:
        offset = log_file.tell()
        popen = subprocess.Popen(
            [sys.executable, "-m", SERVICES[name]],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    logger.info("started %s (pid %d, log %s)", name, popen.pid, log_path)
    return ServiceProcess(name, popen, log_path, offset)


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick on loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_model_server(
    log_dir: Path, env: Mapping[str, str] | None = None, timeout_s: float = 180.0
) -> tuple[ServiceProcess, str]:
    """``vidpipe run model-server`` on free gRPC, REST and metrics ports, waited for until it
    serves (preloaded models in memory); returns the process and its gRPC ``host:port``, the
    detector's ``VIDPIPE_INFERENCE_URL``. The caller stops it.

    Raises:
        StackError: it exited or did not start serving within ``timeout_s``.
    """
    grpc_port = free_port()
    ports = {
        "VIDPIPE_GRPC_PORT": str(grpc_port),
        "VIDPIPE_HTTP_PORT": str(free_port()),
        "VIDPIPE_METRICS_PORT": str(free_port()),
    }
    proc = start_service("model-server", log_dir, {**ports, **(env or {})}, tag=f"-{grpc_port}")
    try:
        proc.wait_logged("model-server started", timeout_s=timeout_s)
    except StackError:
        proc.stop()
        raise
    return proc, f"127.0.0.1:{grpc_port}"
