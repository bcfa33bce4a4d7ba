"""On-demand detection requests end to end: the dashboard (in-process), the detector and the
renderer (processes) over the real Kafka API, S3, Postgres, Redis and MLflow.

A real vtest frame (pedestrians) is posted with an API key and followed over the websocket
to ``finished`` with person boxes; a socket closed early leaves its request ``interrupted``;
an interrupted request is skipped by the detector; refused images are recorded ``failed``;
the idempotency key, tenancy, rate limit and the database's timestamp check hold; and the
timestamps of every stored record are in lifecycle order.
"""

from __future__ import annotations

import asyncio
import http.server
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import sqlalchemy as sa
import sqlalchemy.exc
from fastapi import FastAPI
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from services.dashboard.app import create_app
from services.dashboard.settings import DashboardSettings
from tests.integration.dashboard.conftest import (
    GENEROUS,
    Tenant,
    bearer,
    objects,
    resources,
)
from tests.integration.pipeline.conftest import Services
from vidpipe import keys
from vidpipe.bus import make_producer
from vidpipe.db import REQUEST_STEPS, detection_requests
from vidpipe.events import DetectionRequested, encode_event
from vidpipe.topics import REQUESTS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
WS = "/api/v1/requests/ws"


@pytest.fixture(autouse=True)
def every_record_ordered(app: FastAPI, tenant_factory: Callable[[], Tenant]) -> Iterator[None]:
    """After each test, before its tenants are dropped: the timestamps of every stored
    request (of every test so far that kept its tenant, and this one's) are in order."""
    yield
    with resources(app).engine.connect() as conn:
        rows = conn.execute(sa.select(detection_requests)).all()
    for row in rows:
        assert_ordered(row)


def follow(client: TestClient, first: dict[str, Any] | bytes, *rest: bytes) -> list[dict[str, Any]]:
    """Open the socket, send ``first`` (and ``rest``), read until the server closes."""
    received: list[dict[str, Any]] = []
    with client.websocket_connect(WS) as ws:
        if isinstance(first, bytes):
            ws.send_bytes(first)
        else:
            ws.send_json(first)
        for extra in rest:
            ws.send_bytes(extra)
        while True:
            message = ws.receive()
            if message["type"] == "websocket.close":
                break
            received.append(json.loads(message["text"]))
    return received


def stored(app: FastAPI, request_id: str) -> Any:
    with resources(app).engine.connect() as conn:
        return conn.execute(
            sa.select(detection_requests).where(detection_requests.c.request_id == request_id)
        ).one()


def assert_ordered(row: Any) -> None:
    """Reached steps are in lifecycle order, and failed/interrupted end the record."""
    reached = [(s, getattr(row, f"{s}_at")) for s in REQUEST_STEPS]
    times = [(s, t) for s, t in reached if t is not None]
    assert times[0][0] == "created"
    for (_, earlier), (later_step, later) in itertools.pairwise(times):
        assert later >= earlier, f"{later_step} before the step before it in {reached}"


def wait_stored(
    app: FastAPI, request_id: str, reached: Callable[[Any], bool], timeout_s: float = 20
) -> Any:
    """The stored row once ``reached(row)``; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not reached(row := stored(app, request_id)):
        assert time.monotonic() < deadline, f"request {request_id} did not get there: {row}"
        time.sleep(0.1)
    return row


def test_request_when_posted_with_api_key_then_socket_delivers_person_boxes_and_finishes(
    app: FastAPI,
    tenant_factory: Callable[[], Tenant],
    pipeline: Services,
    vtest_jpeg: bytes,
) -> None:
    tenant = tenant_factory()
    client = bearer(app, tenant.api_key)

    posted = client.post(
        "/api/v1/requests",
        files={"image": ("frame.jpg", vtest_jpeg, "image/jpeg")},
        data={"score_threshold": "0.3", "classes": "person"},
    )
    assert posted.status_code == 202, posted.text
    request_id = posted.json()["request_id"]
    assert posted.json()["state"] == "created"
    messages = follow(client, {"request_id": request_id})

    states = [m["state"] for m in messages if m["type"] == "state"]
    assert states[-1] == "finished"
    result = next(m["request"] for m in messages if m["type"] == "result")
    persons = [d for d in result["result"]["detections"] if d["label"] == "person"]
    assert len(persons) >= 3, result["result"]
    assert all(d["score"] >= 0.3 for d in persons)
    assert result["render_url"], "the renderer's annotated image is linked"
    rendered = httpx.get(result["render_url"]).content
    image = cv2.imdecode(np.frombuffer(rendered, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (576, 768, 3)
    row = stored(app, request_id)
    assert row.finished_at is not None and row.interrupted_at is None
    assert_ordered(row)
    assert client.get(f"/api/v1/requests/{request_id}").json()["state"] == "finished"


def test_request_when_image_sent_over_socket_then_created_and_finished_there(
    app: FastAPI, tenant_factory: Callable[[], Tenant], pipeline: Services, vtest_jpeg: bytes
) -> None:
    tenant = tenant_factory()
    client = bearer(app, tenant.api_key)

    messages = follow(client, {"classes": ["person"]}, vtest_jpeg)

    states = [m["state"] for m in messages if m["type"] == "state"]
    assert states[0] == "created" and states[-1] == "finished"
    result = next(m["request"] for m in messages if m["type"] == "result")
    assert result["source"] == "upload" and result["created_by"] == "key:test key"
    assert {d["label"] for d in result["result"]["detections"]} == {"person"}
    assert_ordered(stored(app, result["request_id"]))


def test_request_when_socket_closes_early_then_interrupted(
    app: FastAPI,
    tenant_factory: Callable[[], Tenant],
    pipeline: Services,
    vtest_jpeg: bytes,
    base_url: str,
) -> None:
    tenant = tenant_factory()
    url = base_url.replace("http://", "ws://") + WS
    headers = {"Authorization": f"Bearer {tenant.api_key}"}

    with connect(url, additional_headers=headers) as ws:  # a real client over uvicorn
        ws.send(json.dumps({}))
        ws.send(vtest_jpeg)
        created = json.loads(ws.recv(timeout=10))
        assert created["state"] == "created"
        request_id = created["request_id"]
    # the client is gone before the result: the server marks the record

    row = wait_stored(app, request_id, lambda r: r.interrupted_at is not None)
    assert row.finished_at is None
    time.sleep(3)  # a detector that was already running it must not move it on
    row = stored(app, request_id)
    assert row.interrupted_at is not None and row.finished_at is None
    assert row.processed_at is None or row.processed_at <= row.interrupted_at
    assert_ordered(row)


def test_request_when_server_drops_the_socket_then_interrupted(
    app: FastAPI, tenant_factory: Callable[[], Tenant], pipeline: Services, vtest_jpeg: bytes
) -> None:
    tenant = tenant_factory()
    client = bearer(app, tenant.api_key)

    with client.websocket_connect(WS) as ws:  # leaving it cancels the server's handler
        ws.send_bytes(vtest_jpeg)
        request_id = ws.receive_json()["request_id"]

    row = wait_stored(app, request_id, lambda r: r.interrupted_at is not None)
    assert row.finished_at is None
    assert_ordered(row)


def test_request_when_interrupted_before_processing_then_detector_skips_it(
    app: FastAPI,
    tenant_factory: Callable[[], Tenant],
    pipeline: Services,
    vtest_jpeg: bytes,
) -> None:
    tenant = tenant_factory()
    request_id = uuid.uuid4().hex
    image = keys.request_image(tenant.client_id, request_id)
    objects(app).put(image.bucket, image.key, vtest_jpeg, "image/jpeg")
    with resources(app).engine.connect() as conn:
        conn.execute(
            sa.insert(detection_requests).values(
                request_id=request_id,
                client_id=tenant.client_id,
                source="upload",
                model_name="coco-centernet",
                model_alias="production",
                score_threshold=0.3,
                interrupted_at=sa.func.now(),
            )
        )
        conn.commit()
    event = DetectionRequested(
        request_id=request_id,
        client_id=tenant.client_id,
        image=image,
        width=768,
        height=576,
        model_name="coco-centernet",
        model_alias="production",
        score_threshold=0.3,
        created_ts_ns=time.time_ns(),
    )

    async def publish() -> None:
        producer = make_producer(resources(app).settings.kafka)
        await producer.start()
        try:
            await producer.send_and_wait(REQUESTS, encode_event(event), key=request_id.encode())
        finally:
            await producer.stop()

    asyncio.run(publish())
    # a request published after it reaches the detector after it too (or on the other
    # partition, polled in the same loop): once that one is finished, ours was seen
    client = bearer(app, tenant.api_key)
    follow(client, {}, vtest_jpeg)
    time.sleep(1)

    row = stored(app, request_id)
    assert row.processing_at is None and row.processed_at is None
    annotation = keys.request_annotation(tenant.client_id, request_id)
    assert not objects(app).exists(annotation.bucket, annotation.key)
    assert pipeline.running[0].log_path.read_text().count(request_id) >= 1, "skip is logged"


def test_request_when_image_is_not_decodable_then_422_and_recorded_failed(
    app: FastAPI, tenant_factory: Callable[[], Tenant], vtest_jpeg: bytes
) -> None:
    tenant = tenant_factory()
    client = bearer(app, tenant.api_key)

    truncated = client.post(
        "/api/v1/requests", files={"image": ("x.jpg", vtest_jpeg[:4000], "image/jpeg")}
    )
    text = client.post(
        "/api/v1/requests", files={"image": ("x.jpg", b"GIF89a? not really", "image/jpeg")}
    )

    for response in (truncated, text):
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "image"
    assert "recorded as failed request" in truncated.json()["detail"]
    page = client.get("/api/v1/requests").json()["items"]
    assert [r["state"] for r in page] == ["failed", "failed"]
    assert all(r["failure_reason"] for r in page)
    for item in page:
        assert_ordered(stored(app, item["request_id"]))
        image = keys.request_image(tenant.client_id, item["request_id"])
        assert not objects(app).exists(image.bucket, image.key)


def test_request_when_png_sent_as_jpeg_then_sniffed_and_stored_as_jpeg(
    app: FastAPI, tenant_factory: Callable[[], Tenant], vtest_jpeg: bytes
) -> None:
    tenant = tenant_factory()
    client = bearer(app, tenant.api_key)
    frame = cv2.imdecode(np.frombuffer(vtest_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None
    png = cv2.imencode(".png", frame)[1].tobytes()

    response = client.post("/api/v1/requests", files={"image": ("x.jpg", png, "image/jpeg")})

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (768, 576)
    image = keys.request_image(tenant.client_id, body["request_id"])
    assert objects(app).get(image.bucket, image.key)[:3] == b"\xff\xd8\xff"


def test_request_when_retried_with_idempotency_key_then_same_request(
    app: FastAPI, tenant_factory: Callable[[], Tenant], vtest_jpeg: bytes
) -> None:
    tenant = tenant_factory()
    client = bearer(app, tenant.api_key)
    key = {"Idempotency-Key": f"retry-{uuid.uuid4().hex}"}
    files = {"image": ("x.jpg", vtest_jpeg, "image/jpeg")}

    first = client.post("/api/v1/requests", files=files, headers=key)
    second = client.post("/api/v1/requests", files=files, headers=key)
    other = client.post(
        "/api/v1/requests", files=files, data={"score_threshold": "0.9"}, headers=key
    )

    assert first.status_code == second.status_code == 202
    assert first.json()["request_id"] == second.json()["request_id"]
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
    assert len(client.get("/api/v1/requests").json()["items"]) == 1


def test_request_when_other_tenant_asks_then_not_found_and_lists_are_scoped(
    app: FastAPI, tenant_factory: Callable[[], Tenant], vtest_jpeg: bytes
) -> None:
    owner, other = tenant_factory(), tenant_factory()
    mine = bearer(app, owner.api_key)
    theirs = bearer(app, other.api_key)
    request_id = mine.post(
        "/api/v1/requests", files={"image": ("x.jpg", vtest_jpeg, "image/jpeg")}
    ).json()["request_id"]

    assert theirs.get(f"/api/v1/requests/{request_id}").status_code == 404
    assert theirs.get("/api/v1/requests").json()["items"] == []
    assert theirs.get(f"/api/v1/requests?client_id={owner.client_id}").status_code == 404
    with theirs.websocket_connect(WS) as ws:
        ws.send_json({"request_id": request_id})
        refused = ws.receive_json()
    assert refused["type"] == "error" and refused["status"] == 404
    assert [r["request_id"] for r in mine.get("/api/v1/requests").json()["items"]] == [request_id]


def test_request_socket_when_no_credentials_or_viewer_then_refused(
    app: FastAPI, tenant_factory: Callable[[], Tenant], vtest_jpeg: bytes
) -> None:
    tenant = tenant_factory()
    from services.dashboard.auth import Role

    with TestClient(app).websocket_connect(WS) as ws:
        assert ws.receive_json()["status"] == 401
    viewer = tenant.as_(app, Role.viewer)
    viewer.headers["Origin"] = "http://testserver"
    with viewer.websocket_connect(WS) as ws:
        ws.send_bytes(vtest_jpeg)
        assert ws.receive_json()["status"] == 403
    viewer.headers["Origin"] = "https://evil.example"
    with viewer.websocket_connect(WS) as ws:
        assert ws.receive_json()["status"] == 403


def test_request_when_over_limits_then_429_413_and_422(
    tenant_factory: Callable[[], Tenant], dashboard_settings: DashboardSettings, app: FastAPI
) -> None:
    tight = create_app(
        DashboardSettings.model_validate(
            GENEROUS
            | {
                "limit_requests_client": "3/minute",
                "request_max_bytes": 4096,
                "request_max_pixels": 100 * 100,
            }
        )
    )
    tenant = tenant_factory()
    client = bearer(tight, tenant.api_key)
    small = cv2.imencode(".png", np.zeros((50, 50, 3), np.uint8))[1].tobytes()
    wide = cv2.imencode(".png", np.zeros((10, 2000, 3), np.uint8))[1].tobytes()
    big = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (80, 80, 3), np.uint8))[
        1
    ].tobytes()
    try:
        too_wide = client.post("/api/v1/requests", files={"image": ("a.png", wide, "image/png")})
        too_big = client.post("/api/v1/requests", files={"image": ("b.png", big, "image/png")})
        fine = client.post("/api/v1/requests", files={"image": ("c.png", small, "image/png")})
        over = client.post("/api/v1/requests", files={"image": ("d.png", small, "image/png")})
    finally:
        resources(tight).close()

    assert too_wide.status_code == 422 and "pixels" in too_wide.json()["detail"]
    assert too_big.status_code == 413 and "recorded as failed" in too_big.json()["detail"]
    assert fine.status_code == 202
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1


def test_request_timestamps_when_written_out_of_order_then_database_refuses(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    request_id = uuid.uuid4().hex
    with resources(app).engine.connect() as conn:
        conn.execute(
            sa.insert(detection_requests).values(
                request_id=request_id,
                client_id=tenant.client_id,
                source="upload",
                model_name="coco-centernet",
                model_alias="production",
                score_threshold=0.3,
            )
        )
        conn.commit()
        bad: list[dict[str, Any]] = [
            {"processed_at": sa.func.now()},  # processed, never processing
            {"finished_at": sa.func.now()},  # finished, never processed
            {"processing_at": sa.text("now() - interval '1 hour'")},  # before created
        ]
        for values in bad:
            with pytest.raises(sqlalchemy.exc.IntegrityError):
                conn.execute(
                    sa.update(detection_requests)
                    .where(detection_requests.c.request_id == request_id)
                    .values(**values)
                )
            conn.rollback()


@pytest.fixture
def image_server(vtest_jpeg: bytes) -> Iterator[str]:
    """A loopback HTTP server answering every GET with the vtest frame."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")  # a wrong type: content is sniffed
            self.send_header("Content-Length", str(len(vtest_jpeg)))
            self.end_headers()
            self.wfile.write(vtest_jpeg)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/frame"
    server.shutdown()


def test_request_when_image_url_then_fetched_only_where_the_url_policy_allows(
    app: FastAPI, tenant_factory: Callable[[], Tenant], image_server: str
) -> None:
    tenant = tenant_factory()
    port = image_server.split(":")[2].split("/")[0]
    allowed = create_app(
        DashboardSettings.model_validate(
            GENEROUS | {"cameras": {"allow": [f"127.0.0.1/32:{port}"]}}
        )
    )
    try:
        refused = bearer(app, tenant.api_key).post(
            "/api/v1/requests", json={"image_url": image_server}
        )
        metadata = bearer(app, tenant.api_key).post(
            "/api/v1/requests", json={"image_url": "http://169.254.169.254/latest/meta-data"}
        )
        fetched = bearer(allowed, tenant.api_key).post(
            "/api/v1/requests", json={"image_url": image_server, "classes": ["person"]}
        )
    finally:
        resources(allowed).close()

    assert refused.status_code == 422 and refused.json()["field"] == "image_url"
    assert "loopback" in refused.json()["detail"]
    assert metadata.status_code == 422 and metadata.json()["field"] == "image_url"
    assert fetched.status_code == 202, fetched.text
    body = fetched.json()
    assert (body["source"], body["width"], body["height"]) == ("url", 768, 576)


def test_request_list_when_paged_then_newest_first_without_gaps_or_repeats(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    tenant = tenant_factory()
    client = bearer(app, tenant.api_key)
    made = [
        client.post("/api/v1/requests", files={"image": (f"{i}.jpg", b"nope %d" % i, "image/jpeg")})
        for i in range(3)
    ]
    assert all(r.status_code == 422 for r in made)

    first = client.get("/api/v1/requests?limit=2").json()
    second = client.get(f"/api/v1/requests?limit=2&before={first['next_before']}").json()

    ids = [r["request_id"] for r in first["items"] + second["items"]]
    assert len(ids) == len(set(ids)) == 3
    assert second["next_before"] is None
    created = [r["timestamps"]["created"] for r in first["items"] + second["items"]]
    assert created == sorted(created, reverse=True)
    assert client.get("/api/v1/requests?before=garbage").status_code == 422
