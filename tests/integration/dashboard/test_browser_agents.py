"""Camera status in a real browser (Debian's Chromium driven by Playwright): a superadmin
adds a camera on the dashboard, an agent's heartbeat reports it streaming through the real
broker and the status sink (run as its own process), the camera's badge turns `streaming`
and `live` without a reload, and the agents page lists the agent. Screenshots go to
out/screenshots/ (and the test's own output directory)."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi import FastAPI

from tests.integration.dashboard.conftest import PASSWORD, Tenant, free_port
from tests.integration.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from tests.integration.pipeline.conftest import Services
from tests.integration.status.conftest import camera_status, heartbeat, publish
from vidpipe.settings import ServiceSettings
from vidpipe.topics import AGENTS_STATUS

pytestmark = pytest.mark.integration


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
            page.get_by_label("Stream URL").fill("rtsp://10.1.2.3:554/dock")
            page.get_by_label("Frames per second").fill("5")
            page.get_by_role("button", name="Add camera").click()
            expect(page.get_by_text(f"Camera {camera_id} added.")).to_be_visible()
            state = page.locator("#camera-status [data-field=state]")
            expect(state).to_have_text("unknown")
            expect(page.locator("#live-status")).to_have_text("offline")

            # an agent reports it streaming (the real agent: vidpipe run agent)
            beat = heartbeat(agent_id, camera_status(tenant.client_id, camera_id, reconnects=1))
            with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
                pool.submit(
                    asyncio.run, publish(stack_settings.kafka, AGENTS_STATUS, beat)
                ).result()
            # then the page turns streaming and live by itself (status.js, every 5 s)
            expect(state).to_have_text("streaming", timeout=30_000)
            expect(page.locator("#live-status")).to_have_text("live")
            expect(page.locator("#camera-status [data-field=host]")).to_have_text(
                f"{agent_id}.host"
            )
            expect(page.locator("#camera-status [data-field=reconnects]")).to_have_text("1")
            page.screenshot(path=SCREENSHOTS / "09-camera-status.png", full_page=True)

            # the agents page lists the agent, live, with the camera
            page.get_by_role("link", name="Agents").click()
            row = page.locator(f"tr[data-agent='{agent_id}']")
            expect(row.locator("[data-field=agent_state]")).to_have_text("live")
            expect(row.locator("[data-field=camera_count]")).to_have_text("1")
            camera_row = page.locator(f"tr[data-status-camera='{tenant.client_id}/{camera_id}']")
            expect(camera_row.locator("[data-field=state]")).to_have_text("streaming")
            page.screenshot(path=SCREENSHOTS / "10-agents.png", full_page=True)
        finally:
            browser.close()
    shutil.copy(SCREENSHOTS / "10-agents.png", tmp_path / "agents.png")
    assert errors == [], f"JavaScript errors: {errors}"
