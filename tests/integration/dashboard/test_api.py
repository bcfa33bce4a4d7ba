"""The REST API against real Postgres, Redis, S3 and the MLflow registry."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from redis import Redis

from services.dashboard.auth import Role
from services.dashboard.settings import DashboardSettings
from tests.integration.dashboard.conftest import Tenant, objects
from tests.integration.dashboard.seed import SESSION, seed_clip, seed_frame, seed_report
from tests.unit.fakes import decoded
from vidpipe.configstore import ConfigStore
from vidpipe.events import FrameDecoded
from vidpipe.latest import LatestFrames
from vidpipe.topics import TRAINING_JOBS

pytestmark = pytest.mark.integration


def _fields(response: httpx.Response) -> dict[str, str]:
    """``{field: message}`` of a 422, from FastAPI's list or the dashboard's own shape."""
    body = response.json()
    if isinstance(body["detail"], list):
        return {str(e["loc"][-1]): e["msg"] for e in body["detail"]}
    return {body.get("field", ""): body["detail"]}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"url": "http://cam/stream"}, "url", "scheme must be one of rtsp, rtsps, file"),
        ({"url": "rtsp:///nohost"}, "url", "need a host"),
        ({"url": "file://server/share.mp4"}, "url", "absolute local path"),
        ({"url": "rtsp://h:99999/s"}, "url", "not a valid URL"),
        ({"fps": 0.05}, "fps", "greater than or equal to 0.1"),
        ({"fps": 121}, "fps", "less than or equal to 120"),
        ({"name": "  "}, "name", "non-blank"),
        ({"name": "x" * 101}, "name", "at most 100"),
        ({"camera_id": "bad id!"}, "camera_id", "match pattern"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ],
)
def test_cameras_when_invalid_then_422_naming_the_field(
    app: FastAPI,
    tenant_factory: Callable[[], Tenant],
    change: dict[str, object],
    field: str,
    message: str,
) -> None:
    tenant = tenant_factory()
    good = {"camera_id": f"{tenant.client_id}-v", "name": "V", "url": "rtsps://h/s", "fps": 5}
    response = tenant.as_(app, Role.operator).post("/api/v1/cameras", json={**good, **change})
    assert response.status_code == 422
    assert message in _fields(response)[field]


def test_cameras_when_crud_then_persisted_and_own_id_collision_is_409(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    a = tenant_factory()
    op = a.as_(app, Role.operator)
    camera = {"camera_id": f"{a.client_id}-crud", "name": "Yard", "url": "rtsp://h/s", "fps": 5}
    assert op.post("/api/v1/cameras", json=camera).status_code == 201
    updated = op.put(
        f"/api/v1/cameras/{camera['camera_id']}",
        json={"name": "Yard 2", "url": "rtsps://u:s3cret@10.1.1.1/v", "fps": 2.5, "enabled": False},
    )
    assert updated.json() | {"created_at": 0, "updated_at": 0} == {
        "camera_id": camera["camera_id"],
        "client_id": a.client_id,
        "name": "Yard 2",
        "url": "rtsps://u:***@10.1.1.1/v",  # the password is write-only
        "fps": 2.5,
        "enabled": False,
        "created_at": 0,
        "updated_at": 0,
    }
    # A's own id again: 409
    again = op.post("/api/v1/cameras", json=camera)
    assert again.status_code == 409 and "already have" in again.json()["detail"]
    assert op.delete(f"/api/v1/cameras/{camera['camera_id']}").status_code == 204
    assert op.get(f"/api/v1/cameras/{camera['camera_id']}").status_code == 404


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"model_name": "no-such-model"}, "model_name", "not registered"),
        ({"model_alias": "nope"}, "model_alias", "has no alias 'nope'"),
        ({"model_alias": None, "model_version": "999"}, "model_version", "has no version '999'"),
        ({"model_version": "1"}, "body", "exactly one of model_alias or model_version"),
        ({"score_threshold": 1.5}, "score_threshold", "less than or equal to 1"),
        ({"classes_of_interest": ["person", "unicorn"]}, "classes_of_interest", "unicorn"),
        # removed: a camera's fps is what its decoder samples at
        ({"sampling_fps": 2}, "sampling_fps", "Extra inputs are not permitted"),
    ],
)
def test_config_when_invalid_then_422_and_unchanged(
    app: FastAPI,
    tenant_factory: Callable[[], Tenant],
    change: dict[str, object],
    field: str,
    message: str,
) -> None:
    tenant = tenant_factory()
    op = tenant.as_(app, Role.operator)
    path = f"/api/v1/clients/{tenant.client_id}/config"
    good = {"model_name": "coco-centernet", "model_alias": "production", "score_threshold": 0.5}
    response = op.put(path, json={**good, **change})
    assert response.status_code == 422
    errors = _fields(response)
    assert message in errors.get(field, ""), errors
    assert op.get(path).json()["score_threshold"] == 0.3


def test_config_when_changed_then_redis_cache_invalidated(
    app: FastAPI, tenant_factory: Callable[[], Tenant], dashboard_settings: DashboardSettings
) -> None:
    # given the detector's view of the config, cached in Redis
    tenant = tenant_factory()
    detector_view = ConfigStore(dashboard_settings.postgres, dashboard_settings.redis)
    cached = detector_view.get_client_config(tenant.client_id)
    assert cached is not None and cached.score_threshold == 0.3
    # when an operator changes it through the API
    body = {
        "model_name": "coco-centernet",
        "model_version": "1",
        "score_threshold": 0.8,
        "classes_of_interest": ["person", "car"],
    }
    saved = tenant.as_(app, Role.operator).put(
        f"/api/v1/clients/{tenant.client_id}/config", json=body
    )
    assert saved.status_code == 200 and saved.json()["model_uri"] == "models:/coco-centernet/1"
    # then the next read through the cache sees the new config
    fresh = detector_view.get_client_config(tenant.client_id)
    detector_view.close()
    assert fresh is not None
    assert (fresh.score_threshold, fresh.model_version, fresh.classes_of_interest) == (
        0.8,
        "1",
        ("person", "car"),
    )


def test_config_when_cache_entry_has_a_removed_field_then_read_from_postgres(
    tenant_factory: Callable[[], Tenant], dashboard_settings: DashboardSettings
) -> None:
    # given a cache entry written before sampling_fps was removed
    tenant = tenant_factory()
    store = ConfigStore(dashboard_settings.postgres, dashboard_settings.redis)
    try:
        fresh = store.get_client_config(tenant.client_id)
        assert fresh is not None
        old_shape = json.loads(fresh.model_dump_json()) | {"sampling_fps": None}
        redis = Redis.from_url(dashboard_settings.redis.url)
        redis.set(f"vidpipe:client-config:{tenant.client_id}", json.dumps(old_shape), ex=60)
        # when the detector reads the config, it gets Postgres's, and the cache is refilled
        assert store.get_client_config(tenant.client_id) == fresh
        cached = redis.get(f"vidpipe:client-config:{tenant.client_id}")
        assert cached is not None and b"sampling_fps" not in cached
        redis.close()
    finally:
        store.close()


def test_results_when_frames_stored_then_latest_with_working_presigned_urls(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    # given frames 2, 10 and 9 (10 not rendered yet) and two clips in S3
    tenant = tenant_factory()
    store = objects(app)
    for seq, rendered in ((2, True), (10, False), (9, True)):
        seed_frame(store, tenant.client_id, tenant.camera_id, seq, rendered)
    seed_clip(store, tenant.client_id, tenant.camera_id, 1)
    seed_clip(store, tenant.client_id, tenant.camera_id, 0)
    viewer = tenant.as_(app, Role.viewer)
    # when the latest result is asked for
    result = viewer.get(f"/api/v1/cameras/{tenant.camera_id}/latest").json()["result"]
    # then it is frame 10 (numerically highest), with a frame URL that works and no render yet
    assert result["frame_seq"] == 10 and result["render_url"] is None
    assert result["detections"][0]["label"] == "person"
    frame = httpx.get(result["frame_url"])
    assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
    assert "X-Amz-Expires=120" in result["frame_url"]
    # and the clips come in segment order with working URLs
    clips = viewer.get(f"/api/v1/cameras/{tenant.camera_id}/clips").json()
    assert [c["segment"] for c in clips] == [0, 1]
    assert httpx.get(clips[0]["url"]).content.startswith(b"\x00\x00\x00\x18ftyp")


async def test_results_when_pointer_set_then_latest_is_its_frame_not_the_highest_key(
    app: FastAPI, tenant_factory: Callable[[], Tenant], dashboard_settings: DashboardSettings
) -> None:
    # given frames 2 and 10 in S3, then a restarted decoder whose newer frame 3 the detector
    # recorded as the camera's latest
    tenant = tenant_factory()
    store = objects(app)
    for seq in (2, 10, 3):
        seed_frame(store, tenant.client_id, tenant.camera_id, seq)
    pointer = LatestFrames(dashboard_settings.redis)
    newer = time.time_ns()
    await pointer.advance(
        [pointer_frame(tenant, 10, newer - 10**9), pointer_frame(tenant, 3, newer)]
    )
    await pointer.aclose()
    # when the latest result is asked for
    viewer = tenant.as_(app, Role.viewer)
    result = viewer.get(f"/api/v1/cameras/{tenant.camera_id}/latest").json()["result"]
    # then it is the frame the pointer names (the newest capture), not the highest seq
    assert result["frame_seq"] == 3


def pointer_frame(tenant: Tenant, seq: int, capture_ts_ns: int) -> FrameDecoded:
    return decoded(tenant.client_id, tenant.camera_id, seq, capture_ts_ns)


def test_live_when_frame_lands_then_sse_result_event(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    seed_frame(objects(app), tenant.client_id, tenant.camera_id, 4)
    viewer = tenant.as_(app, Role.viewer)
    with viewer.stream("GET", f"/api/v1/cameras/{tenant.camera_id}/live?limit=1") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in stream.iter_lines() if line]
    assert "event: result" in lines and f"id: {SESSION}/4" in lines
    data = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
    assert data["result"]["frame_seq"] == 4 and data["result"]["render_url"]


def test_reports_when_rows_exist_then_scoped_performance_and_shared_accuracy(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    a, b = tenant_factory(), tenant_factory()
    seed_report(app, a.client_id, a.camera_id, hours=3)
    seed_report(app, b.client_id, b.camera_id, hours=2)
    rows = a.as_(app, Role.viewer).get("/api/v1/reports/performance").json()
    assert len(rows) == 3 and {r["client_id"] for r in rows} == {a.client_id}
    assert rows[0]["hour"] < rows[-1]["hour"]  # oldest first, ready to chart
    assert rows[-1]["detections_by_label"]["person"] == 4200
    assert a.as_(app, Role.viewer).get("/api/v1/reports/accuracy").status_code == 200


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"dataset": "someone-else/set"}, "dataset", "under your client's prefix"),
        ({"dataset": "{client}/../other"}, "dataset", "String should match pattern"),
        ({"dataset": "{client}/absent"}, "dataset", "'{client}/absent' not found"),
        ({"eval_dataset": "no-such-shared-set"}, "eval_dataset", "vidpipe datasets build"),
        ({"base_model": "models:/coco-centernet@nope"}, "base_model", "no alias 'nope'"),
        ({"base_model": "s3://x"}, "base_model", "models:/NAME@ALIAS"),
        ({"architecture": "fcos_resnet50_fpn"}, "architecture", "the trainer supports"),
        ({"epochs": 0}, "epochs", "greater than or equal to 1"),
        ({"learning_rate": 0}, "learning_rate", "greater than 0"),
    ],
)
def test_jobs_when_invalid_then_422_naming_the_field(
    app: FastAPI,
    tenant_factory: Callable[[], Tenant],
    change: dict[str, object],
    field: str,
    message: str,
) -> None:
    tenant = tenant_factory()
    good = {
        "dataset": tenant.dataset,
        "architecture": "ssdlite320_mobilenet_v3_large",
        "base_model": "models:/coco-centernet@production",
    }
    body = {
        k: v.replace("{client}", tenant.client_id) if isinstance(v, str) else v
        for k, v in {**good, **change}.items()
    }
    response = tenant.as_(app, Role.operator).post("/api/v1/jobs", json=body)
    assert response.status_code == 422
    assert message.replace("{client}", tenant.client_id) in _fields(response)[field]


async def _announced_job_keys(bootstrap: str, wanted: bytes, timeout_s: float = 20) -> set[bytes]:
    """Keys on ``training.jobs.v1`` read from the start until ``wanted`` shows up."""
    consumer = AIOKafkaConsumer(
        TRAINING_JOBS,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    keys: set[bytes] = set()
    try:
        deadline = time.monotonic() + timeout_s
        while wanted not in keys and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            keys |= {r.key for records in batches.values() for r in records if r.key}
    finally:
        await consumer.stop()
    return keys


def test_jobs_when_submitted_then_stored_queued_and_announced_on_kafka(
    app: FastAPI, tenant_factory: Callable[[], Tenant], dashboard_settings: DashboardSettings
) -> None:
    tenant = tenant_factory()
    body = {
        "dataset": f"{tenant.dataset}/annotations.json",  # the COCO key form is accepted too
        "eval_dataset": tenant.dataset,
        "architecture": "fasterrcnn_mobilenet_v3_large_320_fpn",
    }

    created = tenant.as_(app, Role.operator).post("/api/v1/jobs", json=body)

    assert created.status_code == 201, created.text
    job = created.json()
    assert (job["state"], job["dataset"], job["client_id"]) == (
        "queued",
        tenant.dataset,
        tenant.client_id,
    )
    key = str(job["job_id"]).encode()
    bootstrap = dashboard_settings.kafka.bootstrap_servers
    assert key in asyncio.run(_announced_job_keys(bootstrap, key))


def test_promotions_when_gate_decided_then_listed_newest_first(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    # given two gate decisions for a fresh model name
    import uuid

    import sqlalchemy as sa

    from tests.integration.dashboard.conftest import resources
    from vidpipe.db import model_promotions

    tenant = tenant_factory()
    model = f"{tenant.client_id}-promo-{uuid.uuid4().hex[:8]}"
    rows = [
        {"model_name": model, "candidate_version": "2", "production_version": "1",
         "dataset": "vtest-persons", "candidate_map": 0.41, "production_map": 0.55,
         "decision": "refused", "requested_by": "ops", "client_id": tenant.client_id},
        {"model_name": model, "candidate_version": "3", "production_version": "1",
         "dataset": "vtest-persons", "candidate_map": 0.58, "production_map": 0.55,
         "decision": "promoted", "requested_by": "ops", "client_id": tenant.client_id},
    ]  # fmt: skip
    engine = resources(app).engine
    with engine.begin() as conn:
        for row in rows:
            conn.execute(sa.insert(model_promotions), row)
    try:
        # when a viewer lists them
        response = tenant.as_(app, Role.viewer).get(
            "/api/v1/reports/promotions", params={"model_name": model}
        )
        # then both decisions come back with their numbers, newest first
        assert response.status_code == 200
        listed = response.json()
        assert [p["candidate_version"] for p in listed] == ["3", "2"]
        assert listed[1]["decision"] == "refused" and listed[1]["candidate_map"] == 0.41
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(model_promotions).where(model_promotions.c.model_name == model))
