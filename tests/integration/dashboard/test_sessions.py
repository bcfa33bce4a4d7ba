"""Server-side sessions: sign-out really ends a session (a replayed cookie is refused), a
password change, "sign out everywhere", an admin's revocation and disabling a user end every
session of the user; sessions time out; the cookie is Secure unless bound to loopback."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.dashboard.app import SESSION_COOKIE, create_app
from services.dashboard.auth import Role
from services.dashboard.settings import DashboardSettings
from tests.integration.dashboard.conftest import PASSWORD, Tenant, resources, sign_in

pytestmark = pytest.mark.integration

NEW_PASSWORD = "a brand new passphrase"


def _cookie(client: TestClient) -> str:
    value = client.cookies.get(SESSION_COOKIE)
    assert value
    return value


def _replay(app: FastAPI, cookie: str) -> int:
    """Status of /api/v1/me with only ``cookie``, as an attacker holding a copy would send it."""
    return (
        TestClient(app)
        .get("/api/v1/me", headers={"cookie": f"{SESSION_COOKIE}={cookie}"})
        .status_code
    )


def test_logout_when_old_cookie_replayed_then_401(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    client = tenant.as_(app, Role.viewer)
    stolen = _cookie(client)
    assert _replay(app, stolen) == 200
    assert client.post("/logout", follow_redirects=False).status_code == 303
    assert _replay(app, stolen) == 401


def test_sign_in_when_it_succeeds_then_session_id_changes(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    client = TestClient(app)
    client.get("/login")
    anonymous = _cookie(client)
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    client.post(
        "/login",
        data={"email": tenant.emails[Role.viewer], "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert _cookie(client) != anonymous  # no fixation
    assert _replay(app, anonymous) == 401


def test_password_change_when_done_then_every_session_of_the_user_ends(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    # given the operator signed in on two devices
    tenant = tenant_factory()
    email = tenant.emails[Role.operator]
    laptop, phone = sign_in(app, email), sign_in(app, email)
    other_user = tenant.as_(app, Role.viewer)
    # a wrong current password changes nothing
    wrong = laptop.post(
        "/api/v1/me/password", json={"current_password": "nope", "new_password": NEW_PASSWORD}
    )
    assert wrong.status_code == 422 and wrong.json()["field"] == "current_password"
    assert phone.get("/api/v1/me").status_code == 200
    # when the password is changed on the laptop
    changed = laptop.post(
        "/api/v1/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert changed.status_code == 204
    # then both devices are signed out, the other user is not
    assert laptop.get("/api/v1/me").status_code == 401
    assert phone.get("/api/v1/me").status_code == 401
    assert other_user.get("/api/v1/me").status_code == 200
    # and only the new password signs in
    assert sign_in(app, email, NEW_PASSWORD).get("/api/v1/me").status_code == 200


def test_password_page_when_changed_then_signed_out_with_a_notice(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    client = tenant.as_(app, Role.viewer)
    assert "Change password" in client.get("/account").text
    page = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert page.status_code == 200 and "Sign in with the new password" in page.text
    assert client.get("/api/v1/me").status_code == 401


def test_sign_out_everywhere_when_asked_then_all_sessions_end(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    email = tenant.emails[Role.viewer]
    here, there = sign_in(app, email), sign_in(app, email)
    assert here.post("/api/v1/me/sessions/revoke").status_code == 204
    assert here.get("/api/v1/me").status_code == 401
    assert there.get("/api/v1/me").status_code == 401


def test_admin_when_revoking_or_disabling_a_user_then_their_sessions_end(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    a, b = tenant_factory(), tenant_factory()
    admin = a.as_(app, Role.admin)
    operator_id = a.user_ids[Role.operator]
    victim = a.as_(app, Role.operator)
    assert admin.post(f"/api/v1/users/{operator_id}/sessions/revoke").status_code == 204
    assert victim.get("/api/v1/me").status_code == 401
    # another client's user: 404, their session untouched
    theirs = b.as_(app, Role.viewer)
    revoke_b = admin.post(f"/api/v1/users/{b.user_ids[Role.viewer]}/sessions/revoke")
    assert revoke_b.status_code == 404
    assert theirs.get("/api/v1/me").status_code == 200
    # disabling ends the sessions and refuses sign-in; enabling lets them back
    victim = a.as_(app, Role.operator)
    disabled = admin.patch(f"/api/v1/users/{operator_id}", json={"disabled": True})
    assert disabled.status_code == 200 and disabled.json()["disabled_at"]
    assert victim.get("/api/v1/me").status_code == 401
    with pytest.raises(AssertionError):
        sign_in(app, a.emails[Role.operator])
    assert admin.patch(f"/api/v1/users/{operator_id}", json={"disabled": False}).status_code == 200
    assert sign_in(app, a.emails[Role.operator]).get("/api/v1/me").status_code == 200
    # a role change applies to the next request
    assert admin.patch(f"/api/v1/users/{operator_id}", json={"role": "viewer"}).status_code == 200
    assert victim.get("/api/v1/me").status_code == 401  # (signed out above)
    me = sign_in(app, a.emails[Role.operator]).get("/api/v1/me").json()
    assert me["role"] == "viewer"
    assert (
        admin.patch(f"/api/v1/users/{a.user_ids[Role.admin]}", json={"disabled": True}).status_code
        == 409
    )


@pytest.fixture
def short_app(dashboard_settings: DashboardSettings) -> Iterator[FastAPI]:
    """An app whose sessions idle out after 60 s and end 120 s after sign-in."""
    settings = dashboard_settings.model_copy(
        update={"session_idle_s": 60, "session_max_age_s": 120}
    )
    built = create_app(settings)
    yield built
    resources(built).close()


def test_sessions_when_idle_or_too_old_then_they_end(
    short_app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    client = sign_in(short_app, tenant.emails[Role.viewer])
    # Redis holds the session under the cookie's SHA-256, expiring when idle for 60 s
    key = "vidpipe:session:" + hashlib.sha256(_cookie(client).encode()).hexdigest()
    redis = resources(short_app).redis
    assert 0 < redis.ttl(key) <= 60
    client.get("/api/v1/me")
    assert redis.ttl(key) > 55  # each request renews it
    # a session started 121 s ago ends, however busy
    record = json.loads(redis.get(key) or "{}")
    record["created"] = time.time() - 121
    redis.set(key, json.dumps(record), ex=60)
    assert client.get("/api/v1/me").status_code == 401
    assert redis.get(key) is None


def test_cookie_when_not_on_loopback_then_secure(dashboard_settings: DashboardSettings) -> None:
    exposed = create_app(dashboard_settings.model_copy(update={"host": "0.0.0.0"}))
    try:
        set_cookie = TestClient(exposed).get("/login").headers["set-cookie"].lower()
    finally:
        resources(exposed).close()
    assert "; secure" in set_cookie and "httponly" in set_cookie and "samesite=lax" in set_cookie
    assert DashboardSettings(host="127.0.0.1").cookies_secure is False
    assert DashboardSettings(host="0.0.0.0", secure_cookies=False).cookies_secure is False
