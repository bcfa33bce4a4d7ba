"""Start and stop vidpipe service processes (one OS process each), as the demo and the
integration tests do. Each logs to ``<log_dir>/<name>.log``."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MODULES = {
    "decoder": "services.decoder",
    "detector": "services.detector",
    "renderer": "services.renderer",
    "metrics-sink": "services.metrics_sink",
    "dashboard": "services.dashboard",
    "trainer": "services.trainer",
}


@dataclass
class ServiceProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

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
                log.warning("%s ignored SIGTERM for %.0f s; killing it", self.name, timeout_s)
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL: no clean-up, as in a crash."""
        self.popen.kill()
        self.popen.wait()


def start_service(
    name: str, log_dir: Path, env: Mapping[str, str] | None = None, tag: str = ""
) -> ServiceProcess:
    """Start ``python -m services.<name>`` with extra ``VIDPIPE_*`` environment."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}{tag}.log"
    full_env = {**os.environ, **(env or {})}
    with log_path.open("ab") as log_file:
        popen = subprocess.Popen(
            [sys.executable, "-m", MODULES[name]],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
    log.info("started %s (pid %d, log %s)", name, popen.pid, log_path)
    return ServiceProcess(name, popen, log_path)


def wait_for_exit(proc: ServiceProcess, timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = proc.popen.poll()
        if code is not None:
            return code
        time.sleep(0.2)
    return None
