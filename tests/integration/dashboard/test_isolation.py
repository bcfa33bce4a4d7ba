"""Tenant isolation: no route lets client A read, list, change or delete client B's data.

The routes come from the app's OpenAPI document, so a new route is covered without editing
this test. B's ids go into every path parameter and every ``client_id``/``camera_id`` query
or body field; A calls each operation as an admin (session) and with its API key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.dashboard.auth import Role
from tests.integration.dashboard.conftest import Tenant, bearer, objects, resources
from tests.integration.dashboard.routes import body_fields, call, operations
from tests.integration.dashboard.seed import seed_clip, seed_frame, seed_report
from vidpipe.topics import ANNOTATIONS_BUCKET, RENDERS_BUCKET

pytestmark = pytest.mark.integration

TENANT_TABLES = (
    "clients",
    "cameras",
    "client_configs",
    "users",
    "api_keys",
    "training_jobs",
    "performance_reports",
)
TENANT_PARAMS = {"camera_id", "client_id", "job_id", "user_id", "key_id"}


def snapshot(app: FastAPI, tenant: Tenant) -> dict[str, Any]:
    """Every row and object of ``tenant``."""
    found: dict[str, Any] = {}
    with resources(app).engine.connect() as conn:
        for table in TENANT_TABLES:
            rows = conn.execute(
                sa.text(f"SELECT * FROM {table} WHERE client_id = :c ORDER BY 1"),
                {"c": tenant.client_id},
            )
            found[table] = [dict(r._mapping) for r in rows]
    for bucket in (ANNOTATIONS_BUCKET, RENDERS_BUCKET):
        found[bucket] = sorted(objects(app).iter_keys(bucket, f"{tenant.client_id}/"))
    return found


def test_routes_when_client_a_targets_client_b_then_404_or_403_and_b_unchanged(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    # given clients A and B, each with a camera, config, job, users, key, results and reports
    a, b = tenant_factory(), tenant_factory()
    for tenant in (a, b):
        seed_frame(objects(app), tenant.client_id, tenant.camera_id, 1)
        seed_clip(objects(app), tenant.client_id, tenant.camera_id, 0)
        seed_report(app, tenant.client_id, tenant.camera_id, hours=2)
    before = snapshot(app, b)
    b_ids = {
        "camera_id": b.camera_id,
        "client_id": b.client_id,
        "job_id": b.job_id,
        "user_id": b.user_ids[Role.admin],
        "key_id": b.key_id,
        "model_name": "coco-centernet",
    }
    b_fields = {"client_id": b.client_id, "camera_id": b.camera_id}
    b_secrets = [
        f"Tenant {b.client_id}",
        f"rtsp://{b.client_id}:pw@",
        f"{b.client_id}/secret-set",
        *b.emails.values(),
    ]
    callers = {"admin session": a.as_(app, Role.admin), "operator API key": bearer(app, a.api_key)}
    checked = 0
    for caller, client in callers.items():
        for op in operations(app):
            if op.public:
                continue
            # when A calls the operation with B's ids wherever an id goes
            response = call(client, op, b_ids, query=b_fields, body_overrides=b_fields)
            checked += 1
            where = f"{caller} {op}: {response.status_code} {response.text[:300]}"
            # then nothing of B comes back, and nothing aimed at B succeeds
            assert response.status_code < 500, where
            if response.status_code < 400:
                assert b.client_id not in response.text, where
            assert not [m for m in b_secrets if m in response.text], where  # errors echo ids only
            targets_b = (
                TENANT_PARAMS & set(op.path_params)
                or {"client_id", "camera_id"} & set(op.query_params)
                or "client_id" in body_fields(op)
            )
            if targets_b:
                assert response.status_code in (403, 404), where
    assert checked >= 2 * 25
    # and B's rows and objects are exactly as they were
    assert snapshot(app, b) == before


def test_lists_when_client_a_lists_then_only_a_is_shown(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    a, b = tenant_factory(), tenant_factory()
    seed_report(app, a.client_id, a.camera_id, hours=1)
    seed_report(app, b.client_id, b.camera_id, hours=1)
    client = a.as_(app, Role.admin)
    for path in (
        "/api/v1/clients",
        "/api/v1/cameras",
        "/api/v1/jobs",
        "/api/v1/users",
        "/api/v1/api-keys",
        "/api/v1/reports/performance",
    ):
        rows = client.get(path).json()
        assert rows and {r.get("client_id") for r in rows} == {a.client_id}, path
