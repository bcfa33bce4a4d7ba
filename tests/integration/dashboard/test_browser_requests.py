"""The "Try an image" page in a real browser (Debian's Chromium driven by Playwright): an
operator uploads a vtest frame, watches the state change live over the websocket (session
cookie, same origin), sees the annotated image and the recent requests. The screenshot
goes to out/screenshots/ for a human to look at."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.dashboard.auth import Role
from tests.integration.dashboard.conftest import PASSWORD, Services, Tenant, resources
from tests.integration.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from vidpipe.db import detection_requests

pytestmark = pytest.mark.integration


def test_try_an_image_when_operator_uploads_then_states_live_and_boxes_shown(
    app: FastAPI,
    tenant_factory: Callable[[], Tenant],
    base_url: str,
    pipeline: Services,
    vtest_jpeg: bytes,
    tmp_path: Path,
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run `bash infra/local/install-browser.sh`")
    from playwright.sync_api import expect, sync_playwright

    tenant = tenant_factory()
    picture = tmp_path / "pedestrians.jpg"
    picture.write_bytes(vtest_jpeg)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(f"{base_url}/requests")
            page.get_by_label("E-mail").fill(tenant.emails[Role.operator])
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.goto(f"{base_url}/requests")
            expect(page.get_by_role("heading", name="Try an image")).to_be_visible()
            expect(page.get_by_text("No requests yet.")).to_be_visible()

            page.locator("#try-image").set_input_files(picture)
            page.get_by_label("Classes", exact=True).fill("person")
            page.get_by_role("button", name="Detect").click()

            expect(page.locator("#try-state")).to_have_text("finished", timeout=60_000)
            result = page.locator("#try-result")
            expect(result).to_be_visible()
            expect(result).to_have_attribute("src", re.compile(r"\.render\.jpg"))
            page.wait_for_function("document.getElementById('try-result').naturalWidth === 768")
            rows = page.locator("#try-detections tbody tr")
            assert rows.count() >= 3
            expect(rows.first).to_contain_text("person")
            for step in ("created", "processing", "processed", "finished"):
                expect(page.locator(f"#try-timeline li[data-step={step}]")).to_have_class("reached")
            recent = page.locator("#recent-requests tbody tr")
            expect(recent.first).to_contain_text("finished")
            page.screenshot(path=SCREENSHOTS / "requests-try-an-image.png", full_page=True)
        finally:
            browser.close()
    assert errors == []
    with resources(app).engine.connect() as conn:
        row = conn.execute(
            sa.select(detection_requests).where(detection_requests.c.client_id == tenant.client_id)
        ).one()
    assert row.finished_at is not None and row.created_by == tenant.emails[Role.operator]
