"""Fixtures for dashboard tests against the real stack: the app, and fresh tenants (clients
with users of every role, a camera, a model config, a one-image dataset and a training job)
named by uuid."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infra.local.media import fetch_vtest
from services.dashboard import accounts
from services.dashboard.accounts import ApiKeyIn, UserIn
from services.dashboard.app import create_app
from services.dashboard.auth import Principal, Role
from services.dashboard.resources import Resources
from services.dashboard.settings import DashboardSettings
from tests.integration.pipeline.conftest import Services
from tests.unit.trainer.synthetic import synthetic_scenes
from vidpipe.cameras import CameraFields, UrlRules, create_camera
from vidpipe.configstore import ClientConfig, ConfigStore
from vidpipe.datasets import upload_dataset
from vidpipe.db import detection_requests, performance_reports, users
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings
from vidpipe.topics import ANNOTATIONS_BUCKET, DATASETS_BUCKET, RENDERS_BUCKET

PASSWORD = "correct horse battery staple"
REPO = Path(__file__).resolve().parents[3]
ROLES = (Role.viewer, Role.operator, Role.admin)
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


#: limits generous enough for a test session's many sign-ins from one address (the
#: throttling tests build an app with the defaults)
GENEROUS = {
    "limit_login_account": "1000/minute",
    "limit_login_ip": "10000/minute",
    "limit_bad_keys_ip": "10000/minute",
    "limit_expensive": "10000/minute",
}


@pytest.fixture(scope="session")
def dashboard_settings(stack: None, stack_settings: ServiceSettings) -> DashboardSettings:
    """The stack's settings (same environment) with generous rate limits."""
    return DashboardSettings.model_validate(GENEROUS)


@pytest.fixture(scope="session")
def model_version(stack: None, stack_settings: ServiceSettings) -> str:
    """``coco-centernet@production`` in the local registry (imported if absent)."""
    from vidpipe_ml.registry import ensure_centernet

    assets = REPO / "var" / "assets" / "centernet"
    return ensure_centernet(stack_settings.mlflow.tracking_uri, weights_dir=assets)


@pytest.fixture(scope="session")
def app(dashboard_settings: DashboardSettings, model_version: str) -> Iterator[FastAPI]:
    built = create_app(dashboard_settings)
    yield built
    resources(built).close()


def resources(app: FastAPI) -> Resources:
    found: Resources = app.state.resources
    return found


def sign_in(app: FastAPI, email: str, password: str = PASSWORD) -> TestClient:
    """A client holding a session cookie and sending the CSRF header on every request."""
    client = TestClient(app)
    page = client.get("/login")
    token = _CSRF.search(page.text)
    assert token, "the sign-in page carries a CSRF token"
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token[1]},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    page = client.get("/cameras")
    token = _CSRF.search(page.text)
    assert token
    client.headers["X-CSRF-Token"] = token[1]
    return client


def bearer(app: FastAPI, key: str) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {key}"})


@dataclass
class Tenant:
    """A client with one user per role, an operator API key, camera, config, a dataset
    (``{client_id}/set`` in the datasets bucket) and a job."""

    client_id: str
    camera_id: str
    job_id: int
    emails: dict[Role, str]
    api_key: str
    key_id: int
    dataset: str
    user_ids: dict[Role, int] = field(default_factory=dict)

    def as_(self, app: FastAPI, role: Role) -> TestClient:
        return sign_in(app, self.emails[role])


def make_tenant(app: FastAPI, settings: DashboardSettings) -> Tenant:
    client_id = f"dash-{uuid.uuid4().hex[:10]}"
    camera_id = f"{client_id}-cam"
    store = ConfigStore(settings.postgres, settings.redis)
    try:
        store.put_client(client_id, f"Tenant {client_id}")
        with store.engine.begin() as conn:
            fields = CameraFields(
                name="Secret gate", url=f"rtsp://{client_id}:pw@10.9.9.9/stream", fps=5
            )
            create_camera(conn, client_id, camera_id, fields, UrlRules.of(settings.cameras))
        store.put_client_config(
            ClientConfig(client_id=client_id, model_name="coco-centernet", score_threshold=0.3)
        )
    finally:
        store.close()
    emails = {role: f"{role}-{client_id}@example.test" for role in ROLES}
    admin = Principal(name="test", role=Role.admin, client_id=client_id)
    with resources(app).engine.connect() as conn:
        user_ids = {
            role: accounts.create_user(
                conn, None, UserIn(email=email, password=PASSWORD, role=role, client_id=client_id)
            ).user_id
            for role, email in emails.items()
        }
        key = accounts.create_api_key(conn, admin, ApiKeyIn(name="test key"))
        job_id = conn.execute(
            sa.text(
                "INSERT INTO training_jobs (client_id, dataset, architecture, epochs, batch_size,"
                " learning_rate, image_size, created_by) VALUES (:c, :d,"
                " 'ssdlite320_mobilenet_v3_large', 3, 4, 0.01, 320, 'test') RETURNING job_id"
            ),
            {"c": client_id, "d": f"{client_id}/secret-set/annotations.json"},
        ).scalar_one()
        conn.commit()
    dataset = f"{client_id}/set"
    upload_dataset(resources(app).objects, dataset, *synthetic_scenes(count=1, size=64))
    return Tenant(client_id, camera_id, job_id, emails, key.key, key.key_id, dataset, user_ids)


def seed_request(app: FastAPI, tenant: Tenant) -> str:
    """An on-demand request record of ``tenant`` (for tests that walk every route); its id."""
    request_id = uuid.uuid4().hex
    with resources(app).engine.begin() as conn:
        conn.execute(
            sa.insert(detection_requests).values(
                request_id=request_id,
                client_id=tenant.client_id,
                created_by="test",
                source="upload",
                model_name="coco-centernet",
                model_alias="production",
                score_threshold=0.3,
            )
        )
    return request_id


def drop_tenant(app: FastAPI, tenant: Tenant) -> None:
    res = resources(app)
    with res.engine.connect() as conn:
        conn.execute(
            sa.delete(performance_reports).where(
                performance_reports.c.client_id == tenant.client_id
            )
        )
        conn.commit()
    res.configs.delete_client(tenant.client_id)  # cascades to cameras, users, keys, jobs
    prefix = f"{tenant.client_id}/"
    for bucket in (ANNOTATIONS_BUCKET, RENDERS_BUCKET, DATASETS_BUCKET, "frames"):
        res.objects.delete_prefix(bucket, prefix)


@pytest.fixture
def tenant_factory(
    app: FastAPI, dashboard_settings: DashboardSettings
) -> Iterator[Callable[[], Tenant]]:
    made: list[Tenant] = []

    def make() -> Tenant:
        made.append(make_tenant(app, dashboard_settings))
        return made[-1]

    yield make
    for tenant in made:
        drop_tenant(app, tenant)


@pytest.fixture
def superadmin(app: FastAPI) -> Iterator[str]:
    email = f"root-{uuid.uuid4().hex[:8]}@example.test"
    with resources(app).engine.connect() as conn:
        accounts.create_user(
            conn, None, UserIn(email=email, password=PASSWORD, role=Role.superadmin)
        )
    yield email
    with resources(app).engine.connect() as conn:
        conn.execute(sa.delete(users).where(users.c.email == email))
        conn.commit()


def objects(app: FastAPI) -> ObjectStore:
    return resources(app).objects


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def register_owned_model(app: FastAPI, name: str, owner: str | None) -> None:
    """A registered model owned by ``owner`` (None: shared) with version 1 at alias
    ``production`` (a registry entry only: no artifact behind it)."""
    from mlflow import MlflowClient

    from vidpipe.modelref import owner_tags

    uri = resources(app).settings.mlflow.tracking_uri
    registry = MlflowClient(uri, uri)
    registry.create_registered_model(name, tags=owner_tags(owner))
    version = registry.create_model_version(
        name, source="s3://mlflow/none/model", tags={"labels": '["person"]'}
    )
    registry.set_registered_model_alias(name, "production", version.version)


def delete_model(app: FastAPI, name: str) -> None:
    from mlflow import MlflowClient

    uri = resources(app).settings.mlflow.tracking_uri
    MlflowClient(uri, uri).delete_registered_model(name)


@pytest.fixture
def owned_model(app: FastAPI) -> Iterator[Callable[[str], str]]:
    """``make(client_id) -> name``: a model owned by that client (removed afterwards)."""
    made: list[str] = []

    def make(client_id: str) -> str:
        name = f"{client_id}-ssdlite320_mobilenet_v3_large"
        register_owned_model(app, name, client_id)
        made.append(name)
        return name

    yield make
    for name in made:
        delete_model(app, name)


@pytest.fixture
def base_url(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def vtest_jpeg() -> bytes:
    """Frame 20 of vtest.avi (768x576, several pedestrians) as JPEG."""
    cap = cv2.VideoCapture(str(fetch_vtest(REPO / "var" / "assets")))
    for _ in range(20):
        ok, image = cap.read()
        assert ok
    cap.release()
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def pipeline(stack: None, model_version: str) -> Iterator[Services]:
    """A detector and a renderer as processes, consuming requests (and frames) until the
    module ends (on free metrics ports)."""
    running = Services()
    running.start("detector", VIDPIPE_METRICS_PORT=str(free_port()))
    running.start("renderer", VIDPIPE_METRICS_PORT=str(free_port()))
    yield running
    running.stop_all()
