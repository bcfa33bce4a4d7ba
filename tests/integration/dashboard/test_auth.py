"""Authentication: nothing but /health, /login and static files answers without credentials;
sessions, CSRF and API keys behave."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.dashboard.auth import Role
from tests.integration.dashboard.conftest import PASSWORD, Tenant, bearer, seed_request, sign_in
from tests.integration.dashboard.routes import call, operations

pytestmark = pytest.mark.integration

PUBLIC_PATHS = {("get", "/health"), ("get", "/login"), ("post", "/login")}


def test_routes_when_no_credentials_then_all_but_public_refused(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    # given a tenant with data, and a client without credentials
    tenant = tenant_factory()
    anonymous = TestClient(app)
    ids = {
        "camera_id": tenant.camera_id,
        "client_id": tenant.client_id,
        "job_id": tenant.job_id,
        "user_id": tenant.user_ids[Role.viewer],
        "key_id": tenant.key_id,
        "request_id": seed_request(app, tenant),
        "model_name": "coco-centernet",
    }
    walked = operations(app)
    # then exactly the public operations are marked public
    assert {(op.method, op.path) for op in walked if op.public} == PUBLIC_PATHS
    for op in walked:
        if op.public:
            continue
        # when each other operation is called without credentials
        response = call(anonymous, op, ids)
        # then it is refused, saying how to authenticate
        assert response.status_code == 401, f"{op}: {response.status_code} {response.text[:200]}"
        assert tenant.client_id not in response.text
    for path in ("/", "/api/v1/openapi.json"):  # routes outside the schema
        assert anonymous.get(path, follow_redirects=False).status_code == 401


def test_public_routes_when_no_credentials_then_answer(app: FastAPI) -> None:
    anonymous = TestClient(app)
    assert anonymous.get("/health").json() == {"status": "ok"}
    assert anonymous.get("/static/app.css").status_code == 200
    assert anonymous.get("/static/vendor/chart.umd.min.js").status_code == 200
    page = anonymous.get("/cameras", headers={"accept": "text/html"})
    assert page.status_code == 401 and 'action="/login"' in page.text  # the sign-in form


def test_api_when_bad_or_revoked_key_then_401(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    assert bearer(app, tenant.api_key).get("/api/v1/me").status_code == 200
    bad = bearer(app, tenant.api_key + "x").get("/api/v1/me")
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    admin = tenant.as_(app, Role.admin)
    assert admin.delete(f"/api/v1/api-keys/{tenant.key_id}").status_code == 204
    assert bearer(app, tenant.api_key).get("/api/v1/me").status_code == 401


def test_login_when_wrong_password_then_401_and_no_session(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    client = TestClient(app)
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post(
        "/login",
        data={"email": tenant.emails[Role.viewer], "password": "wrong", "csrf_token": token},
    )
    assert response.status_code == 401 and "Wrong e-mail or password" in response.text
    assert client.get("/api/v1/me").status_code == 401


def test_login_when_form_lacks_csrf_token_then_refused(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    client = TestClient(app)
    client.get("/login")
    response = client.post(
        "/login", data={"email": tenant.emails[Role.viewer], "password": PASSWORD}
    )
    assert response.status_code == 403
    assert client.get("/api/v1/me").status_code == 401


def test_session_cookie_when_signed_in_then_httponly_samesite_lax_not_secure_on_http(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    client = sign_in(app, tenant.emails[Role.viewer])
    cookie = client.get("/api/v1/me").request.headers["cookie"]
    assert cookie.startswith("vidpipe_session=")
    login = TestClient(app)
    set_cookie = login.get("/login").headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie
    assert "secure" not in set_cookie.replace("samesite", "")


def test_cookie_write_when_csrf_token_missing_or_wrong_then_403(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    # given an operator's session
    tenant = tenant_factory()
    client = tenant.as_(app, Role.operator)
    good = client.headers.pop("X-CSRF-Token")
    body = {"name": "n", "url": "rtsp://h/s", "fps": 5, "enabled": True}
    path = f"/api/v1/cameras/{tenant.camera_id}"
    # when writing without the token, or with another one, then refused
    assert client.put(path, json=body).status_code == 403
    assert client.put(path, json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
    form = client.post(f"/cameras/{tenant.camera_id}/delete", data={"csrf_token": "forged"})
    assert form.status_code == 403
    # and with the session's token it goes through
    assert client.put(path, json=body, headers={"X-CSRF-Token": good}).status_code == 200
    assert client.get(path).json()["name"] == "n"


def test_logout_when_posted_then_session_ends(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    client = tenant.as_(app, Role.viewer)
    assert client.post("/logout", follow_redirects=False).status_code == 303
    assert client.get("/api/v1/me").status_code == 401
