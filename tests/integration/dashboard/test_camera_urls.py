"""Camera URLs through the API and pages: the SSRF policy answers 422 for every refused class
(a host name resolving to loopback included); stored passwords never come back, are sealed
at rest, and survive an edit that leaves them out."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.dashboard.auth import Role
from tests.integration.dashboard.conftest import (
    Tenant,
    bearer,
    objects,
    resources,
    seed_request,
    sign_in,
)
from tests.integration.dashboard.routes import call, operations
from tests.integration.dashboard.seed import seed_frame
from vidpipe.cameras import stream_url
from vidpipe.db import cameras

pytestmark = pytest.mark.integration

SECRET = "Hunter2-camera-secret"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "reserved to platform administrators"),
        ("rtsp://169.254.169.254:80/x", "cloud metadata"),
        ("rtsp://metadata.google.internal/x", "cloud metadata"),
        ("rtsp://169.254.1.1/x", "link-local"),
        ("rtsp://[fe80::1]/x", "link-local"),
        ("rtsp://127.0.0.1:5432/x", "loopback"),
        ("rtsp://[::1]/x", "loopback"),
        ("rtsp://localhost:8554/x", "'localhost' resolves to 127.0.0.1"),
        ("rtsp://0.0.0.0/x", "unspecified"),
        ("rtsp://[::ffff:127.0.0.1]/x", "loopback"),
    ],
)
def test_cameras_when_url_points_at_the_platform_then_422_and_nothing_stored(
    app: FastAPI, tenant_factory: Callable[[], Tenant], url: str, message: str
) -> None:
    tenant = tenant_factory()
    admin = tenant.as_(app, Role.admin)
    camera_id = f"{tenant.client_id}-ssrf"
    created = admin.post(
        "/api/v1/cameras", json={"camera_id": camera_id, "name": "x", "url": url, "fps": 5}
    )
    assert created.status_code == 422, created.text
    assert created.json()["field"] == "url" and message in created.json()["detail"]
    assert admin.get(f"/api/v1/cameras/{camera_id}").status_code == 404
    edited = admin.put(
        f"/api/v1/cameras/{tenant.camera_id}", json={"name": "x", "url": url, "fps": 5}
    )
    assert edited.status_code == 422 and message in edited.json()["detail"]


def test_camera_form_when_url_refused_then_message_on_the_form(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    form = {
        "camera_id": f"{tenant.client_id}-f",
        "name": "x",
        "url": "rtsp://169.254.169.254/latest",
        "fps": "5",
        "csrf_token": "",
    }
    page = tenant.as_(app, Role.operator).post("/cameras/new", data=form)
    assert page.status_code == 422 and "cloud metadata" in page.text


def test_file_urls_when_superadmin_then_allowed(
    app: FastAPI, tenant_factory: Callable[[], Tenant], superadmin: str
) -> None:
    tenant = tenant_factory()
    body = {
        "camera_id": f"{tenant.client_id}-file",
        "client_id": tenant.client_id,
        "name": "clip",
        "url": "file:///srv/clips/gate.mp4",
        "fps": 5,
    }
    assert sign_in(app, superadmin).post("/api/v1/cameras", json=body).status_code == 201


def test_camera_password_when_stored_then_no_api_response_or_page_contains_it(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    # given a camera whose URL holds a password in user-info and one in the query string
    tenant = tenant_factory()
    url = f"rtsp://admin:{SECRET}@10.20.30.40:554/live?channel=1&password={SECRET}q"
    admin = tenant.as_(app, Role.admin)
    camera_id = f"{tenant.client_id}-pw"
    body = {"camera_id": camera_id, "name": "pw", "url": url, "fps": 5}
    created = admin.post("/api/v1/cameras", json=body)
    assert created.status_code == 201 and SECRET not in created.text
    assert created.json()["url"] == "rtsp://admin:***@10.20.30.40:554/live?channel=1&password=***"
    # when every GET operation and page is called by every role and the API key
    ids = {
        "camera_id": camera_id,
        "client_id": tenant.client_id,
        "job_id": tenant.job_id,
        "user_id": tenant.user_ids[Role.viewer],
        "key_id": tenant.key_id,
        "request_id": seed_request(app, tenant),
        "model_name": "coco-centernet",
    }
    callers = [tenant.as_(app, role) for role in (Role.viewer, Role.operator, Role.admin)]
    callers.append(bearer(app, tenant.api_key))
    seen = 0
    seed_frame(objects(app), tenant.client_id, camera_id, 1)  # the live stream sends one event
    for client in callers:
        for op in operations(app):
            if op.method == "get" and not op.public:
                response = call(client, op, ids)
                seen += 1
                # then the password is never in it
                assert SECRET not in response.text, f"{op}: {response.text[:300]}"
        for page in ("/cameras", f"/cameras/{camera_id}/edit"):
            assert SECRET not in client.get(page).text
    assert seen >= 4 * 15
    # and at rest it is sealed, while the decoder still gets the full URL
    res = resources(app)
    with res.engine.connect() as conn:
        row = conn.execute(sa.select(cameras).where(cameras.c.camera_id == camera_id)).one()
        assert SECRET not in row.url and SECRET not in (row.url_secret or "")
        assert stream_url(conn, tenant.client_id, camera_id, res.url_rules.cipher) == url


def test_camera_edit_when_password_left_out_then_kept_and_other_host_gets_none(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    res = resources(app)
    operator = tenant.as_(app, Role.operator)
    path = f"/api/v1/cameras/{tenant.camera_id}"
    # the form shows the URL without its password, and the password field empty
    form = operator.get(f"/cameras/{tenant.camera_id}/edit").text
    assert f'value="rtsp://{tenant.client_id}@10.9.9.9/stream"' in form
    assert 'name="password" type="password" autocomplete="new-password" value=""' in form
    # saving the form unchanged keeps the stored password
    saved = operator.post(
        f"/cameras/{tenant.camera_id}/edit",
        data={"name": "Gate", "url": f"rtsp://{tenant.client_id}@10.9.9.9/stream", "fps": "5"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    with res.engine.connect() as conn:
        kept = stream_url(conn, tenant.client_id, tenant.camera_id, res.url_rules.cipher)
    assert kept == f"rtsp://{tenant.client_id}:pw@10.9.9.9/stream"
    # the API round trip (GET, change fps, PUT the masked URL back) keeps it too
    camera = operator.get(path).json()
    update = {"name": camera["name"], "url": camera["url"], "fps": 2, "enabled": True}
    assert operator.put(path, json=update).status_code == 200
    with res.engine.connect() as conn:
        assert stream_url(conn, tenant.client_id, tenant.camera_id, res.url_rules.cipher) == kept
    # *** aimed at another host is refused: a stored password never travels
    moved = operator.put(path, json={**update, "url": f"rtsp://{tenant.client_id}:***@10.7.7.7/s"})
    assert moved.status_code == 422 and moved.json()["field"] == "url"
