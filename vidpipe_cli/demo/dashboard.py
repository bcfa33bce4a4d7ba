"""The demo's dashboard account, and the clean-up of a dashboard left by an older demo.

The dashboard itself runs under `vidpipe serve` after the demo (see
:func:`vidpipe_cli.demo.runner.serve_product`). Older demos started it alone and kept its
PID in ``<state_dir>/run/dashboard.pid``; :func:`stop_dashboard` stops such a one.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from vidpipe.db import create_engine
from vidpipe.settings import ServiceSettings

log = logging.getLogger(__name__)

DEMO_EMAIL = "demo@vidpipe.example"
#: A loopback-only demo account; change it (or create real users) before exposing the port.
DEMO_PASSWORD = "vidpipe-demo-password"


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


def stop_dashboard(state_dir: Path) -> bool:
    """SIGTERM a dashboard an older demo started, if any. Returns whether one was stopped."""
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
