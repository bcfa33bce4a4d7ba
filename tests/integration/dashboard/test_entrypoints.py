"""The dashboard's entry points: ``vidpipe users create`` and ``python -m services.dashboard``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from tests.integration.dashboard.conftest import PASSWORD, Tenant, free_port, sign_in
from vidpipe_cli.users import app as users_app

pytestmark = pytest.mark.integration


def test_users_create_when_client_exists_then_user_can_sign_in(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    email = f"cli-{uuid.uuid4().hex[:6]}@example.test"
    args = ["create", "--client", tenant.client_id, "--email", email, "--password", PASSWORD]
    result = CliRunner().invoke(users_app, [*args, "--role", "operator"])
    assert result.exit_code == 0, result.output
    assert f"user {email} (operator, client {tenant.client_id}) created" in result.output
    me = sign_in(app, email).get("/api/v1/me").json()
    assert (me["role"], me["client_id"]) == ("operator", tenant.client_id)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--client", "no-such-client-q", "--role", "viewer"],
            "client 'no-such-client-q' not found",
        ),
        (["--role", "viewer"], "client_id is required"),
        (["--role", "owner"], "role"),
        (["--client", "x", "--role", "viewer", "--password", "short"], "at least 10"),
    ],
)
def test_users_create_when_bad_input_then_exit_nonzero_with_message(
    app: FastAPI, args: list[str], message: str
) -> None:
    base = ["create", "--email", f"bad-{uuid.uuid4().hex[:6]}@example.test"]
    if "--password" not in args:
        base += ["--password", PASSWORD]
    result = CliRunner().invoke(users_app, [*base, *args])
    assert result.exit_code != 0
    assert message in result.output


def test_main_when_run_as_module_then_serves_on_settings_port(app: FastAPI) -> None:
    port = free_port()
    env = {**os.environ, "VIDPIPE_PORT": str(port), "VIDPIPE_HOST": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.dashboard"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "the dashboard did not start in 30 s"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/cameras").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert code in (0, -signal.SIGTERM)
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    assert "dashboard on http://127.0.0.1:" in output and "Finished server process" in output
