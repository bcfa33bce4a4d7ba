"""The users, API-key and account pages: admins manage their client's users and keys, a
generated password and a new key are shown once, operators and viewers cannot get there."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from fastapi import FastAPI

from services.dashboard.auth import Role
from tests.integration.dashboard.conftest import Tenant, bearer, sign_in

pytestmark = pytest.mark.integration


def test_users_page_when_admin_creates_a_user_then_password_shown_once_and_it_works(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    a, b = tenant_factory(), tenant_factory()
    admin = a.as_(app, Role.admin)
    page = admin.get("/users").text
    assert a.emails[Role.viewer] in page and b.client_id not in page
    email = f"new-{uuid.uuid4().hex[:6]}@example.test"
    created = admin.post("/users", data={"email": email, "role": "operator"})
    assert created.status_code == 200
    password = re.search(r'id="created-password">([^<]+)<', created.text)
    assert password and email in created.text
    assert password[1] not in admin.get("/users").text  # shown once
    new_user = sign_in(app, email, password[1])
    assert new_user.get("/api/v1/me").json()["role"] == "operator"
    # role, disable, sign-out and delete through the page
    user_id = next(u["user_id"] for u in admin.get("/api/v1/users").json() if u["email"] == email)
    admin.post(f"/users/{user_id}", data={"action": "role", "role": "viewer"})
    assert new_user.get("/api/v1/me").json()["role"] == "viewer"
    admin.post(f"/users/{user_id}", data={"action": "disable"})
    assert new_user.get("/api/v1/me").status_code == 401
    assert "disabled" in admin.get("/users").text
    taken = admin.post("/users", data={"email": b.emails[Role.viewer], "role": "viewer"})
    assert taken.status_code == 422 and b.emails[Role.viewer] not in taken.text.split("<table")[0]
    assert (
        admin.post(f"/users/{b.user_ids[Role.viewer]}", data={"action": "delete"}).status_code
        == 404
    )
    assert admin.post(f"/users/{user_id}", data={"action": "delete"}).status_code == 200


def test_api_keys_page_when_admin_creates_a_key_then_shown_once_and_revocable(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    admin = tenant.as_(app, Role.admin)
    created = admin.post("/api-keys", data={"name": "reader", "role": "viewer"})
    key = re.search(r'id="created-key">([^<]+)<', created.text)
    assert created.status_code == 200 and key
    assert key[1] not in admin.get("/api-keys").text
    reader = bearer(app, key[1])
    assert reader.get("/api/v1/me").json()["role"] == "viewer"
    key_id = next(
        k["key_id"] for k in admin.get("/api/v1/api-keys").json() if k["name"] == "reader"
    )
    admin.post(f"/api-keys/{key_id}/revoke")
    assert reader.get("/api/v1/me").status_code == 401


def test_admin_pages_when_operator_or_viewer_then_403_but_account_page_for_all(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    for role in (Role.viewer, Role.operator):
        client = tenant.as_(app, role)
        for path in ("/users", "/api-keys"):
            assert client.get(path).status_code == 403, (role, path)
        assert client.get("/account").status_code == 200
        assert 'href="/users"' not in client.get("/cameras").text
    assert 'href="/users"' in tenant.as_(app, Role.admin).get("/cameras").text
