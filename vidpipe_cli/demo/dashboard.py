"""The demo's dashboard: a demo user and a dashboard process that outlives ``vidpipe demo``.

The dashboard keeps running after the demo so a newcomer can open it; its PID goes to
``<state_dir>/run/dashboard.pid`` and ``vidpipe down`` stops it.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.local.processes import start_service
from vidpipe.db import create_engine
from vidpipe.settings import ServiceSettings

log = logging.getLogger(__name__)

DEMO_EMAIL = "demo@vidpipe.example"
#: A loopback-only demo account; change it (or create real users) before exposing the port.
DEMO_PASSWORD = "vidpipe-demo-password"


@dataclass(frozen=True)
class DashboardAccess:
    url: str
    email: str
    password: str


def ensure_demo_user(client_id: str) -> None:
    """An ``admin`` of ``client_id`` with the demo credentials (kept if it exists)."""
    # The dashboard's optional extra (argon2, fastapi); `vidpipe down` must work without it.
    from services.dashboard import accounts
    from services.dashboard.accounts import UserIn
    from services.dashboard.errors import Conflict

    body = UserIn(email=DEMO_EMAIL, password=DEMO_PASSWORD, role="admin", client_id=client_id)  # type: ignore[arg-type]
    engine = create_engine(ServiceSettings().postgres, pool_size=1)
    try:
        with engine.connect() as conn:
            accounts.create_user(conn, None, body)
    except Conflict:
        log.info("demo user %s exists", DEMO_EMAIL)
    finally:
        engine.dispose()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def ensure_dashboard(
    client_id: str,
    state_dir: Path,
    camera_access: Mapping[str, str] | None = None,
    port: int = 8000,
) -> DashboardAccess:
    """Start the dashboard on 127.0.0.1:``port`` unless one already answers there.
    ``camera_access``: URL-policy environment (the demo's RTSP server on the allow-list,
    so its camera stays editable; file URLs stay off).

    Raises:
        RuntimeError: it did not answer ``/health`` within 60 s; names its log file.
    """
    ensure_demo_user(client_id)
    url = f"http://127.0.0.1:{port}"
    if not _healthy(url):
        env = {"VIDPIPE_PORT": str(port), **(camera_access or {})}
        proc = start_service("dashboard", state_dir / "log", env)
        (state_dir / "run").mkdir(parents=True, exist_ok=True)
        (state_dir / "run" / "dashboard.pid").write_text(f"{proc.popen.pid}\n")
        deadline = time.monotonic() + 60
        while not _healthy(url):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start; see {proc.log_path}")
            time.sleep(0.5)
    return DashboardAccess(url=url, email=DEMO_EMAIL, password=DEMO_PASSWORD)


def stop_dashboard(state_dir: Path) -> bool:
    """SIGTERM the dashboard the demo started, if any. Returns whether one was stopped."""
    pid_file = state_dir / "run" / "dashboard.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip())
    pid_file.unlink()
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists() or b"services.dashboard" not in cmdline.read_bytes():
        return False  # gone, or the PID was reused by another process
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True
