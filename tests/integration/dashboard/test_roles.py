"""Roles: viewers only read; operators change cameras, config and jobs; admins also manage
their client's users and API keys; a superadmin sees every client."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI

from services.dashboard.accounts import EMAIL_TAKEN
from services.dashboard.auth import Role
from tests.integration.dashboard.conftest import PASSWORD, Tenant, bearer, seed_request, sign_in
from tests.integration.dashboard.routes import SESSION_ENDERS, call, operations

pytestmark = pytest.mark.integration


def _ids(app: FastAPI, tenant: Tenant) -> dict[str, object]:
    return {
        "camera_id": tenant.camera_id,
        "client_id": tenant.client_id,
        "job_id": tenant.job_id,
        "user_id": tenant.user_ids[Role.viewer],
        "key_id": tenant.key_id,
        "request_id": seed_request(app, tenant),
        "model_name": "coco-centernet",
    }


def test_writes_when_viewer_then_every_one_refused(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    # given a viewer of the tenant, by session and by a viewer API key
    tenant = tenant_factory()
    admin = tenant.as_(app, Role.admin)
    key = admin.post("/api/v1/api-keys", json={"name": "read-only", "role": "viewer"}).json()
    viewers = {"session": tenant.as_(app, Role.viewer), "key": bearer(app, key["key"])}
    writes = [op for op in operations(app) if op.method != "get" and not op.public]
    assert len(writes) > 10
    for how, client in viewers.items():
        for op in writes:
            if (op.method, op.path) in SESSION_ENDERS:
                continue  # one's own password and sessions: every role manages them
            # when the viewer calls any write operation on its own client's data
            response = call(client, op, _ids(app, tenant))
            # then it is forbidden
            assert response.status_code == 403, f"{how} {op}: {response.text[:200]}"
    assert admin.get(f"/api/v1/cameras/{tenant.camera_id}").status_code == 200  # untouched


def test_accounts_when_operator_then_forbidden_but_cameras_config_jobs_allowed(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    for client in (tenant.as_(app, Role.operator), bearer(app, tenant.api_key)):
        for op in operations(app):
            if op.path.startswith(("/api/v1/users", "/api/v1/api-keys")) or (
                op.method,
                op.path,
            ) == ("post", "/api/v1/clients"):
                assert call(client, op, _ids(app, tenant)).status_code == 403, str(op)
    operator = tenant.as_(app, Role.operator)
    camera = {
        "camera_id": f"{tenant.client_id}-new",
        "name": "New",
        "url": "rtsp://10.2.3.4/v",
        "fps": 2,
    }
    assert operator.post("/api/v1/cameras", json=camera).status_code == 201
    config = {"model_name": "coco-centernet", "model_version": "1", "score_threshold": 0.5}
    assert (
        operator.put(f"/api/v1/clients/{tenant.client_id}/config", json=config).status_code == 200
    )
    job = {"dataset": tenant.dataset, "architecture": "ssdlite320_mobilenet_v3_large"}
    created = operator.post("/api/v1/jobs", json=job)
    assert created.status_code == 201 and created.json()["state"] == "queued"
    cancelled = operator.post(f"/api/v1/jobs/{created.json()['job_id']}/cancel")
    assert cancelled.json()["state"] == "cancelled"
    assert operator.post(f"/api/v1/jobs/{created.json()['job_id']}/cancel").status_code == 409


def test_accounts_when_admin_then_manages_own_client_only(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    admin = tenant.as_(app, Role.admin)
    # users: create one who can sign in; no superadmins; not oneself
    email = f"new-{tenant.client_id}@example.test"
    made = admin.post(
        "/api/v1/users", json={"email": email, "password": PASSWORD, "role": "operator"}
    )
    assert made.status_code == 201 and made.json()["client_id"] == tenant.client_id
    assert sign_in(app, email).get("/api/v1/me").json()["role"] == "operator"
    again = admin.post(
        "/api/v1/users", json={"email": email, "password": PASSWORD, "role": "viewer"}
    )
    assert again.status_code == 409 and again.json()["detail"] == EMAIL_TAKEN
    assert email not in again.text
    root = {"email": f"x-{email}", "password": PASSWORD, "role": "superadmin"}
    assert admin.post("/api/v1/users", json=root).status_code == 403
    assert admin.delete(f"/api/v1/users/{tenant.user_ids[Role.admin]}").status_code == 409
    assert admin.delete(f"/api/v1/users/{made.json()['user_id']}").status_code == 204
    # keys: the secret is shown once and works; listing never shows it
    key = admin.post("/api/v1/api-keys", json={"name": "ci"}).json()
    assert bearer(app, key["key"]).get("/api/v1/cameras").status_code == 200
    listed = admin.get("/api/v1/api-keys").json()
    assert key["key_id"] in {k["key_id"] for k in listed}
    assert all("key" not in k for k in listed)
    assert key["key"] not in admin.get("/api/v1/api-keys").text


def test_clients_when_superadmin_then_sees_all_and_names_client_on_writes(
    app: FastAPI, tenant_factory: Callable[[], Tenant], superadmin: str
) -> None:
    a, b = tenant_factory(), tenant_factory()
    root = sign_in(app, superadmin)
    clients = {c["client_id"] for c in root.get("/api/v1/clients").json()}
    assert {a.client_id, b.client_id} <= clients
    cameras = {c["camera_id"] for c in root.get("/api/v1/cameras").json()}
    assert {a.camera_id, b.camera_id} <= cameras
    only_b = root.get("/api/v1/cameras", params={"client_id": b.client_id}).json()
    assert [c["camera_id"] for c in only_b] == [b.camera_id]
    camera = {"camera_id": f"{b.client_id}-root", "name": "R", "url": "rtsp://h/s", "fps": 1}
    missing = root.post("/api/v1/cameras", json=camera)
    assert missing.status_code == 422 and missing.json()["field"] == "client_id"
    created = root.post("/api/v1/cameras", json={**camera, "client_id": b.client_id})
    assert created.status_code == 201 and created.json()["client_id"] == b.client_id
    ghost = root.post("/api/v1/cameras", json={**camera, "client_id": "no-such-client-x"})
    assert ghost.status_code == 404


def test_camera_url_when_any_role_then_password_masked(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    for role in (Role.viewer, Role.operator, Role.admin):
        camera = tenant.as_(app, role).get(f"/api/v1/cameras/{tenant.camera_id}").json()
        assert camera["url"] == f"rtsp://{tenant.client_id}:***@10.9.9.9/stream", role


def test_pages_when_superadmin_then_every_client_reachable(
    app: FastAPI, tenant_factory: Callable[[], Tenant], superadmin: str
) -> None:
    a, b = tenant_factory(), tenant_factory()
    root = sign_in(app, superadmin)
    listing = root.get("/cameras").text
    assert a.camera_id in listing and b.camera_id in listing
    config = root.get("/config", params={"client_id": b.client_id})
    assert config.status_code == 200 and "models:/coco-centernet@production" in config.text
    for path in ("/cameras/new", f"/cameras/{b.camera_id}", "/reports", "/jobs"):
        assert root.get(path).status_code == 200, path
