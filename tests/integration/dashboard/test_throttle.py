"""Bounded work: sign-in throttled per account and per address (429 with Retry-After, no
argon2 work once throttled), failed API keys per address, live streams per caller, training
jobs per client (at once and in size), request bodies. Runs an app with the default limits;
each test comes from its own client address."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.dashboard import accounts
from services.dashboard.app import create_app
from services.dashboard.auth import Role
from services.dashboard.settings import DashboardSettings
from tests.integration.dashboard.conftest import PASSWORD, Tenant, resources
from tests.integration.dashboard.seed import seed_frame

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def strict_app(dashboard_settings: DashboardSettings) -> Iterator[FastAPI]:
    """The app with the default limits (5 sign-ins per account and 20 per address a minute,
    10 failed keys per address a minute, 3 live streams, 3 active jobs) and a job-size limit
    of 50 image passes."""
    defaults = DashboardSettings()
    settings = dashboard_settings.model_copy(
        update={
            "limit_login_account": defaults.limit_login_account,
            "limit_login_ip": defaults.limit_login_ip,
            "limit_bad_keys_ip": defaults.limit_bad_keys_ip,
            "max_job_image_epochs": 50,
        }
    )
    built = create_app(settings)
    yield built
    resources(built).close()


def _from_new_address(app: FastAPI) -> TestClient:
    return TestClient(app, client=(f"10.{uuid.uuid4().int % 250}.0.{uuid.uuid4().int % 250}", 4000))


def _attempt(client: TestClient, email: str, password: str) -> tuple[int, str | None]:
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    return response.status_code, response.headers.get("retry-after")


def test_sign_in_when_sixth_wrong_password_in_a_minute_then_429_without_hashing(
    strict_app: FastAPI, tenant_factory: Callable[[], Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = tenant_factory()
    email = tenant.emails[Role.viewer]
    client = _from_new_address(strict_app)
    # given five wrong passwords for one account
    assert [_attempt(client, email, "wrong")[0] for _ in range(5)] == [401] * 5
    # when a sixth attempt comes, even with the right password, and from another address
    hashed: list[str] = []
    real_verify = accounts.auth.verify_password

    def counting_verify(password_hash: str | None, password: str) -> bool:
        hashed.append(password)
        return real_verify(password_hash, password)

    monkeypatch.setattr(accounts.auth, "verify_password", counting_verify)
    status, retry_after = _attempt(client, email, "wrong")
    elsewhere, _ = _attempt(_from_new_address(strict_app), email, PASSWORD)
    # then it is refused with a Retry-After, and no password was hashed for it
    assert status == 429 and retry_after is not None and 0 < int(retry_after) <= 60
    assert elsewhere == 429
    assert hashed == []
    # other accounts are not affected
    assert _attempt(client, tenant.emails[Role.admin], PASSWORD)[0] == 303


def test_sign_in_when_one_address_tries_many_accounts_then_429_after_twenty(
    strict_app: FastAPI,
) -> None:
    client = _from_new_address(strict_app)
    statuses = [
        _attempt(client, f"nobody-{i}-{uuid.uuid4().hex[:6]}@example.test", "x")[0]
        for i in range(21)
    ]
    assert statuses[:20] == [401] * 20 and statuses[20] == 429


def test_api_keys_when_an_address_fails_ten_times_then_429_even_for_a_good_key(
    strict_app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    address = (f"10.200.{uuid.uuid4().int % 250}.1", 4000)
    bad = TestClient(strict_app, client=address, headers={"Authorization": "Bearer vpk_nope"})
    assert [bad.get("/api/v1/me").status_code for _ in range(10)] == [401] * 10
    throttled = bad.get("/api/v1/me")
    assert throttled.status_code == 429 and throttled.headers["retry-after"]
    good = TestClient(
        strict_app, client=address, headers={"Authorization": f"Bearer {tenant.api_key}"}
    )
    assert good.get("/api/v1/me").status_code == 429
    other = TestClient(strict_app, headers={"Authorization": f"Bearer {tenant.api_key}"})
    assert other.get("/api/v1/me").status_code == 200


def test_live_when_caller_holds_all_slots_then_429(
    strict_app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    viewer = tenant.as_(strict_app, Role.viewer)
    who = f"user:{tenant.user_ids[Role.viewer]}"
    slots = resources(strict_app).live_slots
    held = [slots.acquire(who) for _ in range(3)]  # three streams open elsewhere
    try:
        refused = viewer.get(f"/api/v1/cameras/{tenant.camera_id}/live", params={"limit": 1})
        assert refused.status_code == 429 and "live streams" in refused.json()["detail"]
    finally:
        for token in held:
            slots.release(who, token)
    # a slot is freed when its stream ends
    seed_frame(resources(strict_app).objects, tenant.client_id, tenant.camera_id, 1)
    for _ in range(4):
        with viewer.stream("GET", f"/api/v1/cameras/{tenant.camera_id}/live?limit=1") as s:
            assert s.status_code == 200
            list(s.iter_lines())


def test_jobs_when_quota_reached_or_job_too_large_then_refused(
    strict_app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()  # it has one queued job already
    operator = tenant.as_(strict_app, Role.operator)
    job = {"dataset": tenant.dataset, "architecture": "ssdlite", "epochs": 5}
    assert [operator.post("/api/v1/jobs", json=job).status_code for _ in range(2)] == [201, 201]
    full = operator.post("/api/v1/jobs", json=job)
    assert full.status_code == 429 and "limit is 3" in full.json()["detail"]
    assert full.headers["retry-after"]
    # a finished job frees its place
    first = operator.get("/api/v1/jobs").json()[0]["job_id"]
    assert operator.post(f"/api/v1/jobs/{first}/cancel").status_code == 200
    large = operator.post("/api/v1/jobs", json={**job, "epochs": 51})  # 51 x 1 image > 50
    assert large.status_code == 422 and large.json()["field"] == "epochs"
    assert "image passes" in large.json()["detail"]
    assert operator.post("/api/v1/jobs", json=job).status_code == 201


def test_body_when_larger_than_the_limit_then_413(
    strict_app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    operator = tenant.as_(strict_app, Role.operator)
    huge = {"name": "x" * 2_000_000, "url": "rtsp://10.0.0.1/s", "fps": 5}
    started = time.monotonic()
    response = operator.put(f"/api/v1/cameras/{tenant.camera_id}", json=huge)
    assert response.status_code == 413 and time.monotonic() - started < 5

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536

    streamed = operator.put(
        f"/api/v1/cameras/{tenant.camera_id}",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413


def test_expensive_routes_when_a_caller_exceeds_the_limit_then_429(
    dashboard_settings: DashboardSettings, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    tight = create_app(dashboard_settings.model_copy(update={"limit_expensive": "3/minute"}))
    try:
        viewer = tenant.as_(tight, Role.viewer)
        path = f"/api/v1/cameras/{tenant.camera_id}/latest"
        assert [viewer.get(path).status_code for _ in range(3)] == [200] * 3
        over = viewer.get("/api/v1/models")  # the same budget for every expensive route
        assert over.status_code == 429 and int(over.headers["retry-after"]) > 0
        assert viewer.get("/api/v1/cameras").status_code == 200  # cheap routes are not counted
        assert tenant.as_(tight, Role.operator).get(path).status_code == 200  # per caller
    finally:
        resources(tight).close()
