"""Client retention on the dashboard: a superadmin sets it (API and page), the client's
admins see it, invalid values are refused with 422 and change nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI

from services.dashboard.auth import Role
from services.dashboard.settings import DashboardSettings
from tests.integration.dashboard.conftest import Tenant, sign_in

pytestmark = pytest.mark.integration


def test_retention_when_superadmin_sets_it_then_admins_see_it(
    app: FastAPI,
    tenant_factory: Callable[[], Tenant],
    superadmin: str,
    dashboard_settings: DashboardSettings,
) -> None:
    # given a client on the platform default
    tenant = tenant_factory()
    admin = tenant.as_(app, Role.admin)
    path = f"/api/v1/clients/{tenant.client_id}"
    default = dashboard_settings.retention.default_days
    shown = admin.get(path).json()
    assert (shown["retention_days"], shown["effective_retention_days"]) == (None, default)
    # when a superadmin gives it 90 days
    root = sign_in(app, superadmin)
    changed = root.patch(path, json={"retention_days": 90})
    # then the client's admins see 90 days, in the API and on the clients page
    assert changed.status_code == 200 and changed.json()["effective_retention_days"] == 90
    assert admin.get(path).json()["retention_days"] == 90
    listed = {c["client_id"]: c for c in admin.get("/api/v1/clients").json()}
    assert listed[tenant.client_id]["effective_retention_days"] == 90
    page = admin.get("/clients")
    assert (
        page.status_code == 200
        and "90 days" in page.text
        and 'name="retention_days"' not in page.text
    )
    # and back to the default with null
    reset = root.patch(path, json={"retention_days": None})
    assert reset.json()["effective_retention_days"] == default
    assert f"{default} days (platform default)" in admin.get("/clients").text


@pytest.mark.parametrize("bad", [0, -5, 36_501, 1.5, "soon", {}])
def test_retention_when_invalid_then_422_and_unchanged(
    app: FastAPI, tenant_factory: Callable[[], Tenant], superadmin: str, bad: object
) -> None:
    tenant = tenant_factory()
    root = sign_in(app, superadmin)
    path = f"/api/v1/clients/{tenant.client_id}"
    assert root.patch(path, json={"retention_days": 7}).status_code == 200
    response = root.patch(path, json={"retention_days": bad})
    assert response.status_code == 422, response.text
    assert root.get(path).json()["retention_days"] == 7


def test_retention_when_not_superadmin_then_forbidden_and_unchanged(
    app: FastAPI, tenant_factory: Callable[[], Tenant], superadmin: str
) -> None:
    tenant = tenant_factory()
    path = f"/api/v1/clients/{tenant.client_id}"
    for role in (Role.admin, Role.operator):
        client = tenant.as_(app, role)
        assert client.patch(path, json={"retention_days": 1}).status_code == 403, role
        form = client.post(
            f"/clients/{tenant.client_id}/retention",
            data={"retention_days": "1"},
            follow_redirects=False,
        )
        assert form.status_code == 403, role
    assert tenant.as_(app, Role.operator).get("/clients").status_code == 403
    root = sign_in(app, superadmin)
    assert root.get(path).json()["retention_days"] is None
    missing = root.patch("/api/v1/clients/no-such-client-x", json={"retention_days": 3})
    assert missing.status_code == 404


def test_retention_page_when_superadmin_saves_then_stored_and_bad_input_shown(
    app: FastAPI, tenant_factory: Callable[[], Tenant], superadmin: str
) -> None:
    tenant = tenant_factory()
    root = sign_in(app, superadmin)
    action = f"/clients/{tenant.client_id}/retention"
    # when a superadmin saves 14 days on the page
    saved = root.post(action, data={"retention_days": "14"}, follow_redirects=False)
    assert saved.status_code == 303
    # then it is stored and the page says so
    assert root.get(f"/api/v1/clients/{tenant.client_id}").json()["retention_days"] == 14
    assert "14 days" in root.get("/clients").text
    # when zero is sent, the page answers 422 with the message and nothing changes
    bad = root.post(action, data={"retention_days": "0"}, follow_redirects=False)
    assert bad.status_code == 422 and "greater than or equal to 1" in bad.text
    assert root.get(f"/api/v1/clients/{tenant.client_id}").json()["retention_days"] == 14
    # and a blank field means the platform default
    root.post(action, data={"retention_days": ""}, follow_redirects=False)
    assert root.get(f"/api/v1/clients/{tenant.client_id}").json()["retention_days"] is None
