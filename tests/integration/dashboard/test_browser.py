"""The pages in a real browser: Debian's Chromium driven by Playwright against the dashboard
served by uvicorn. Screenshots go to out/screenshots/ for a human to look at."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI

from services.dashboard.auth import Role
from tests.integration.dashboard.conftest import PASSWORD, Tenant, objects
from tests.integration.dashboard.seed import astronaut_bgr, seed_clip, seed_frame, seed_report

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "out" / "screenshots"


def test_pages_when_operator_works_in_browser_then_camera_config_live_and_charts(
    app: FastAPI, tenant_factory: Callable[[], Tenant], base_url: str
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run `bash infra/local/install-browser.sh`")
    from playwright.sync_api import expect, sync_playwright

    tenant = tenant_factory()
    camera_id = f"{tenant.client_id}-web"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            # sign in
            page.goto(f"{base_url}/cameras")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            page.screenshot(path=SCREENSHOTS / "01-sign-in.png")
            page.get_by_label("E-mail").fill(tenant.emails[Role.operator])
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Cameras")).to_be_visible()

            # add a camera, with one mistake first
            page.get_by_role("link", name="Add camera").click()
            page.get_by_label("Camera id").fill(camera_id)
            page.get_by_label("Name").fill("Loading dock")
            page.get_by_label("Stream URL").fill("http://not-a-stream")
            page.get_by_label("Frames per second").fill("5")
            page.get_by_role("button", name="Add camera").click()
            expect(page.get_by_text("url scheme must be one of rtsp, rtsps, file")).to_be_visible()
            page.screenshot(path=SCREENSHOTS / "02-camera-form-error.png", full_page=True)
            page.get_by_label("Stream URL").fill("rtsp://10.1.2.3:554/dock")
            page.get_by_role("button", name="Add camera").click()
            expect(page.get_by_text(f"Camera {camera_id} added.")).to_be_visible()
            expect(page.get_by_text("No results for this camera yet.")).to_be_visible()

            # the live view picks up frames as the pipeline stores them
            store, photo = objects(app), astronaut_bgr()
            seed_frame(store, tenant.client_id, camera_id, 1)
            frame = page.locator("#live-frame")
            expect(frame).to_have_attribute("data-seq", "1", timeout=15_000)
            expect(page.locator("#live-feed")).to_have_text("connected")
            # frames are stored, but no agent reports the camera streaming: not "live"
            expect(page.locator("#live-status")).to_have_text("offline")
            seed_frame(store, tenant.client_id, camera_id, 2, image=photo)
            expect(frame).to_have_attribute("data-seq", "2", timeout=15_000)
            expect(page.locator("#live-detections li")).to_have_count(1)
            page.wait_for_function("document.getElementById('live-frame').naturalWidth === 512")
            page.screenshot(path=SCREENSHOTS / "03-live-view.png", full_page=True)
            # the clip player plays what the renderer wrote
            seed_clip(store, tenant.client_id, camera_id, 0, frames=10, image=photo)
            page.reload()
            video = page.locator("#clip-player")
            page.wait_for_function("() => document.getElementById('clip-player').readyState >= 1")
            assert video.evaluate("v => v.duration") > 1.5
            video.evaluate("v => { v.muted = true; return v.play(); }")
            playing = "() => document.getElementById('clip-player').currentTime > 0.5"
            page.wait_for_function(playing, timeout=10_000)  # Chromium decodes the H.264
            video.evaluate("v => v.pause()")
            page.screenshot(path=SCREENSHOTS / "04-clip-player.png", full_page=True)

            # change the model threshold
            page.get_by_role("link", name="Model").click()
            page.locator("select[name=model]").select_option("coco-centernet@production")
            page.get_by_label("Score threshold").fill("0.75")
            page.get_by_label("Classes of interest").fill("person, car")
            page.get_by_role("button", name="Save").click()
            expect(page.get_by_text("threshold 0.75")).to_be_visible()
            expect(page.locator("#current-threshold")).to_have_text("0.75")
            page.screenshot(path=SCREENSHOTS / "05-model-config.png", full_page=True)

            # reports: charts drawn from performance_reports rows
            seed_report(app, tenant.client_id, camera_id, hours=8)
            page.get_by_role("link", name="Reports").click()
            page.get_by_label("Camera").select_option(camera_id)
            for chart in ("chart-fps", "chart-detections", "chart-latency-rendered"):
                drawn = f"Chart.getChart(document.getElementById('{chart}')) !== undefined"
                page.wait_for_function(drawn, timeout=10_000)
            page.screenshot(path=SCREENSHOTS / "06-reports.png", full_page=True)

            # queue a training job
            page.get_by_role("link", name="Training").click()
            page.locator("input[name=dataset]").fill(tenant.dataset)
            page.get_by_role("button", name="Queue job").click()
            expect(page.get_by_text("queued").first).to_be_visible()
            page.screenshot(path=SCREENSHOTS / "07-training-jobs.png", full_page=True)

            page.get_by_role("link", name="Cameras").click()
            expect(page.get_by_role("link", name=camera_id)).to_be_visible()
            page.screenshot(path=SCREENSHOTS / "08-cameras.png", full_page=True)
        finally:
            browser.close()
    assert errors == [], f"JavaScript errors: {errors}"
