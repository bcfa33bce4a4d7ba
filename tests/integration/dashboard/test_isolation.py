"""Tenant isolation: no route lets client A read, list, change or delete client B's data,
nor learn what B has: models, datasets, reports, stored frames, e-mail addresses.

The routes come from the app's OpenAPI document, so a new route is covered without editing
this test. B's ids (and B's model name) go into every path parameter and every
``client_id``/``camera_id`` query or body field; A calls each operation as an admin
(session) and with its API key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.dashboard.auth import Role
from tests.integration.dashboard.conftest import (
    PASSWORD,
    Tenant,
    bearer,
    objects,
    resources,
    seed_request,
    sign_in,
)
from tests.integration.dashboard.routes import body_fields, call, operations
from tests.integration.dashboard.seed import SESSION, seed_clip, seed_frame, seed_report
from vidpipe.db import accuracy_reports, model_promotions
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
    "accuracy_reports",
    "model_promotions",
)
TENANT_PARAMS = {
    "camera_id", "client_id", "job_id", "user_id", "key_id", "model_name", "request_id"
}  # fmt: skip


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


def seed_model_reports(app: FastAPI, tenant: Tenant, model: str) -> None:
    """An accuracy report and a promotion of ``tenant``'s model on its dataset."""
    with resources(app).engine.begin() as conn:
        conn.execute(
            sa.insert(accuracy_reports).values(
                client_id=tenant.client_id, dataset=tenant.dataset, model_name=model,
                model_version="1", map=0.5, map_50=0.7, map_75=0.4, images=1,
            )
        )  # fmt: skip
        conn.execute(
            sa.insert(model_promotions).values(
                client_id=tenant.client_id, model_name=model, candidate_version="1",
                dataset=tenant.dataset, candidate_map=0.5, decision="promoted",
            )
        )  # fmt: skip


def test_routes_when_client_a_targets_client_b_then_404_or_403_and_b_unchanged(
    app: FastAPI, tenant_factory: Callable[[], Tenant], owned_model: Callable[[str], str]
) -> None:
    # given clients A and B, each with a camera, config, job, users, key, model, results
    # and reports
    a, b = tenant_factory(), tenant_factory()
    for tenant in (a, b):
        seed_frame(objects(app), tenant.client_id, tenant.camera_id, 1)
        seed_clip(objects(app), tenant.client_id, tenant.camera_id, 0)
        seed_report(app, tenant.client_id, tenant.camera_id, hours=2)
        seed_model_reports(app, tenant, owned_model(tenant.client_id))
    b_model = f"{b.client_id}-ssdlite320_mobilenet_v3_large"
    before = snapshot(app, b)
    b_ids = {
        "camera_id": b.camera_id,
        "client_id": b.client_id,
        "job_id": b.job_id,
        "user_id": b.user_ids[Role.admin],
        "key_id": b.key_id,
        "request_id": seed_request(app, b),
        "model_name": b_model,
    }
    b_fields = {"client_id": b.client_id, "camera_id": b.camera_id}
    b_secrets = [
        f"Tenant {b.client_id}",
        f"rtsp://{b.client_id}:pw@",
        f"{b.client_id}:pw",
        f"{b.client_id}/secret-set",
        b.dataset,
        *b.emails.values(),
    ]  # (ids A sent may be echoed, as for ids that do not exist)
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


def test_models_when_a_names_b_model_then_as_if_it_did_not_exist(
    app: FastAPI,
    tenant_factory: Callable[[], Tenant],
    owned_model: Callable[[str], str],
    superadmin: str,
) -> None:
    # given a model of A's, one of B's, and the shared coco-centernet
    a, b = tenant_factory(), tenant_factory()
    mine, theirs = owned_model(a.client_id), owned_model(b.client_id)
    ghost = f"{b.client_id}-no-such-model"
    op = a.as_(app, Role.operator)
    # when A lists models: shared and its own only, marked as such
    listed = {m["name"]: m for m in op.get("/api/v1/models").json()}
    assert theirs not in listed and b.client_id not in str(listed)
    assert listed["coco-centernet"]["shared"] and listed[mine]["client_id"] == a.client_id
    # B's versions, config and base model answer exactly like an absent model
    for name in (theirs, ghost):
        versions = op.get(f"/api/v1/models/{name}/versions")
        assert versions.status_code == 404
        assert versions.json()["detail"] == f"model {name!r} is not registered"
        config = op.put(
            f"/api/v1/clients/{a.client_id}/config",
            json={"model_name": name, "model_alias": "production", "score_threshold": 0.5},
        )
        assert config.status_code == 422
        assert config.json() == {
            "detail": f"model {name!r} is not registered",
            "field": "model_name",
        }
        job = op.post(
            "/api/v1/jobs",
            json={
                "dataset": a.dataset,
                "architecture": "ssdlite",
                "base_model": f"models:/{name}@production",
            },
        )
        assert job.status_code == 422 and "is not registered" in job.json()["detail"]
    assert op.get(f"/api/v1/models/{mine}/versions").status_code == 200
    # and the config page offers shared and own models only
    page = op.get("/config").text
    assert mine in page and "coco-centernet" in page and theirs not in page
    # a superadmin sees every model
    every = {m["name"] for m in sign_in(app, superadmin).get("/api/v1/models").json()}
    assert {mine, theirs, "coco-centernet"} <= every


def test_datasets_when_a_names_b_dataset_then_refused_and_never_listed(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    a, b = tenant_factory(), tenant_factory()
    op = a.as_(app, Role.operator)
    theirs = op.post("/api/v1/jobs", json={"dataset": b.dataset, "architecture": "ssdlite"})
    assert theirs.status_code == 422 and "belongs to another client" in theirs.json()["detail"]
    absent = op.post(
        "/api/v1/jobs", json={"dataset": f"{a.client_id}/absent", "architecture": "ssdlite"}
    )
    assert absent.status_code == 422 and a.dataset in absent.json()["detail"]  # own ones listed
    assert b.client_id not in absent.text


def test_reports_when_b_has_accuracy_and_promotions_then_a_sees_shared_and_own_only(
    app: FastAPI, tenant_factory: Callable[[], Tenant], superadmin: str
) -> None:
    # given accuracy and promotion records of A, of B and a shared one
    a, b = tenant_factory(), tenant_factory()
    shared_model = f"shared-probe-{a.client_id}"
    seed_model_reports(app, a, f"{a.client_id}-m")
    seed_model_reports(app, b, f"{b.client_id}-m")
    with resources(app).engine.begin() as conn:
        conn.execute(
            sa.insert(accuracy_reports).values(
                client_id="shared", dataset="vtest-persons", model_name=shared_model,
                model_version="1", map=0.3, map_50=0.6, map_75=0.2, images=31,
            )
        )  # fmt: skip
    try:
        viewer = a.as_(app, Role.viewer)
        for path in ("/api/v1/reports/accuracy", "/api/v1/reports/promotions"):
            rows = viewer.get(path, params={"limit": 1000}).json()
            assert {r["client_id"] for r in rows} <= {a.client_id, "shared"}, path
            assert any(r["client_id"] == a.client_id for r in rows), path
            assert b.client_id not in str(rows), path
            assert viewer.get(path, params={"client_id": b.client_id}).status_code == 404
        accuracy = viewer.get("/api/v1/reports/accuracy", params={"limit": 1000}).json()
        assert shared_model in {r["model_name"] for r in accuracy}
        page = viewer.get("/reports").text
        assert f"{a.client_id}-m" in page and b.client_id not in page
        root = sign_in(app, superadmin)
        only_b = root.get("/api/v1/reports/accuracy", params={"client_id": b.client_id}).json()
        assert {r["client_id"] for r in only_b} <= {b.client_id, "shared"}
        assert any(r["client_id"] == b.client_id for r in only_b)
    finally:
        with resources(app).engine.begin() as conn:
            conn.execute(
                sa.delete(accuracy_reports).where(accuracy_reports.c.model_name == shared_model)
            )


def test_presign_when_annotation_names_another_tenants_frame_then_not_signed(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    # given B's frame, and an annotation of A's camera naming it (a forged document)
    a, b = tenant_factory(), tenant_factory()
    store = objects(app)
    seed_frame(store, b.client_id, b.camera_id, 3)
    seed_frame(store, a.client_id, a.camera_id, 3)
    key = f"{a.client_id}/{a.camera_id}/{SESSION}/3.json"
    doc = json.loads(store.get(ANNOTATIONS_BUCKET, key))
    doc["image"] = {"bucket": "frames", "key": f"{b.client_id}/{b.camera_id}/{SESSION}/3.jpg"}
    store.put(ANNOTATIONS_BUCKET, key, json.dumps(doc).encode(), "application/json")
    # when A asks for its latest result
    response = a.as_(app, Role.viewer).get(f"/api/v1/cameras/{a.camera_id}/latest")
    # then nothing of B's is signed (the document counts as unreadable)
    assert response.status_code == 200 and response.json()["result"] is None
    assert b.client_id not in response.text


def test_email_when_taken_here_or_elsewhere_then_one_generic_409(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    a, b = tenant_factory(), tenant_factory()
    admin = a.as_(app, Role.admin)
    answers = []
    for taken in (b.emails[Role.viewer], a.emails[Role.viewer]):
        body = {"email": taken, "password": PASSWORD, "role": "viewer"}
        response = admin.post("/api/v1/users", json=body)
        assert response.status_code == 409
        assert taken not in response.text and b.client_id not in response.text
        answers.append(response.json())
    assert answers[0] == answers[1]


def test_camera_id_when_another_client_uses_it_then_no_oracle_and_both_stay_apart(
    app: FastAPI, tenant_factory: Callable[[], Tenant], superadmin: str
) -> None:
    a, b = tenant_factory(), tenant_factory()
    op = a.as_(app, Role.operator)
    # given B's camera id, when A creates a camera with the same id, then it is A's own
    body = {"camera_id": b.camera_id, "name": "Mine", "url": "rtsp://10.0.0.8/s", "fps": 3}
    created = op.post("/api/v1/cameras", json=body)
    assert created.status_code == 201 and created.json()["client_id"] == a.client_id
    # and B's camera is untouched, each tenant sees only its own
    mine = op.get(f"/api/v1/cameras/{b.camera_id}").json()
    theirs = b.as_(app, Role.operator).get(f"/api/v1/cameras/{b.camera_id}").json()
    assert (mine["client_id"], mine["fps"]) == (a.client_id, 3)
    assert theirs["client_id"] == b.client_id and theirs["name"] != "Mine"
    # a superadmin names the client when the id is ambiguous
    root = sign_in(app, superadmin)
    ambiguous = root.get(f"/api/v1/cameras/{b.camera_id}")
    assert ambiguous.status_code == 422 and "name the client" in ambiguous.text
    named = root.get(f"/api/v1/cameras/{b.camera_id}", params={"client_id": b.client_id})
    assert named.status_code == 200 and named.json()["client_id"] == b.client_id
    # and deleting A's camera leaves B's
    assert op.delete(f"/api/v1/cameras/{b.camera_id}").status_code == 204
    assert b.as_(app, Role.viewer).get(f"/api/v1/cameras/{b.camera_id}").status_code == 200
