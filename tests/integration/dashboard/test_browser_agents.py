"""Camera status in a real browser (Debian's Chromium driven by Playwright): a superadmin
adds a camera on the dashboard; a real camera agent (`vidpipe run agent`, a consumer group
of the test's own) starts its decoder on the RTSP server's stream, its heartbeats reach the
status sink (its own process) through the real broker, the camera's badge turns `streaming`
and `live` without a reload, and the agents page lists the agent. Screenshots go to
out/screenshots/ (and the test's own output directory)."""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from infra.local.media import prepare_vtest, start_rtsp_server, stop_rtsp_server
from services.dashboard.app import create_app
from services.dashboard.settings import DashboardSettings
from tests.integration.dashboard.conftest import GENEROUS, PASSWORD, Tenant, free_port, resources
from tests.integration.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from tests.integration.pipeline.conftest import ASSETS, LOGS, Services
from vidpipe.settings import ServiceSettings

pytestmark = pytest.mark.integration

#: The test's RTSP server listens on loopback, which the URL policy refuses unless allowed.
LOOPBACK = ["127.0.0.1/32"]


@pytest.fixture(scope="module")
def app(model_version: str) -> Iterator[FastAPI]:
    """The dashboard with loopback allowed for cameras (the test's RTSP server)."""
    built = create_app(
        DashboardSettings.model_validate({**GENEROUS, "cameras": {"allow": LOOPBACK}})
    )
    yield built
    resources(built).close()


@pytest.fixture
def rtsp_url() -> Iterator[str]:
    """vtest (H.264, 10 fps) over RTSP on a free loopback port, from its first frame."""
    port = free_port()
    proc = start_rtsp_server(prepare_vtest(ASSETS)[1], port, "/dock", LOGS / f"rtsp-{port}.log")
    yield f"rtsp://127.0.0.1:{port}/dock"
    stop_rtsp_server(proc)


@pytest.fixture
def services() -> Iterator[Services]:
    started = Services()
    yield started
    started.stop_all()


def test_status_when_agent_reports_camera_then_badge_turns_streaming_and_agent_listed(
    app: FastAPI,
    tenant_factory: Callable[[], Tenant],
    superadmin: str,
    base_url: str,
    services: Services,
    stack_settings: ServiceSettings,
    rtsp_url: str,
    tmp_path: Path,
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run `bash infra/local/install-browser.sh`")
    from playwright.sync_api import expect, sync_playwright

    tenant = tenant_factory()
    camera_id = f"{tenant.client_id}-agent"
    agent_id = f"agent-{uuid.uuid4().hex[:8]}"
    # the status sink in a consumer group of its own, into this run's Redis database
    services.start(
        "status-sink",
        VIDPIPE_GROUP_ID=f"status-sink-{agent_id}",
        VIDPIPE_METRICS_PORT=str(free_port()),
    )
    # a camera agent of its own group (it owns every control partition, so every enabled
    # camera in the database: room for all of them)
    services.start(
        "agent",
        VIDPIPE_GROUP_ID=f"agents-{agent_id}",
        VIDPIPE_AGENT_ID=agent_id,
        VIDPIPE_CAPACITY="1000",
        VIDPIPE_METRICS_PORT=str(free_port()),
        VIDPIPE_CAMERAS__ALLOW=json.dumps(LOOPBACK),
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(f"{base_url}/cameras")
            page.get_by_label("E-mail").fill(superadmin)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Cameras")).to_be_visible()
            # add a camera for the tenant
            page.get_by_role("link", name="Add camera").click()
            page.locator("select[name=client_id]").select_option(tenant.client_id)
            page.get_by_label("Camera id").fill(camera_id)
            page.get_by_label("Name").fill("Loading dock")
            page.get_by_label("Stream URL").fill(rtsp_url)
            page.get_by_label("Frames per second").fill("5")
            page.get_by_role("button", name="Add camera").click()
            expect(page.get_by_text(f"Camera {camera_id} added.")).to_be_visible()
            state = page.locator("#camera-status [data-field=state]")
            # then the agent streams it and the page turns streaming and live by itself
            # (the announcement, the decoder's first frame, a heartbeat within 5 s, the
            # status sink, status.js every 5 s)
            expect(state).to_have_text("streaming", timeout=45_000)
            expect(page.locator("#live-status")).to_have_text("live", timeout=15_000)
            expect(page.locator("#camera-status [data-field=host]")).to_have_text(
                socket.gethostname()
            )
            page.screenshot(path=SCREENSHOTS / "09-camera-status.png", full_page=True)

            # the agents page lists the agent, live, with the camera
            page.get_by_role("link", name="Agents").click()
            row = page.locator(f"tr[data-agent='{agent_id}']")
            expect(row.locator("[data-field=agent_state]")).to_have_text("live")
            camera_row = page.locator(f"tr[data-status-camera='{tenant.client_id}/{camera_id}']")
            expect(camera_row.locator("[data-field=state]")).to_have_text("streaming")
            page.screenshot(path=SCREENSHOTS / "10-agents.png", full_page=True)
        finally:
            browser.close()
    shutil.copy(SCREENSHOTS / "10-agents.png", tmp_path / "agents.png")
    assert errors == [], f"JavaScript errors: {errors}"
