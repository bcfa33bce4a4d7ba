"""Agents and camera status on the dashboard, against the real Redis and Postgres: what a
superadmin sees, what a client's users see (their own cameras only), lost agents, the Live
badge, a Redis outage (statuses unknown, never a 500), and a deleted camera's status."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from redis import Redis
from redis import asyncio as aioredis

from services.dashboard.auth import Role
from tests.integration.dashboard.conftest import Tenant, bearer, resources, sign_in
from tests.integration.status.conftest import NS, camera_status, heartbeat
from vidpipe.agent_status import camera_status as stored_status
from vidpipe.agent_status import record_heartbeat
from vidpipe.events import AgentHeartbeat

pytestmark = pytest.mark.integration
#: the badges as the templates render them (services/dashboard/templates/_macros.html)
LIVE = re.compile(r'data-field="live"[^>]*>([a-z]+)<')
STATE = re.compile(r'data-field="state"[^>]*>([a-z]+)<')


def record(app: FastAPI, *beats: AgentHeartbeat) -> None:
    """Store ``beats`` as the status sink would (the sink itself: tests/integration/status)."""

    async def store() -> None:
        redis = aioredis.Redis.from_url(resources(app).settings.redis.url)
        try:
            for beat in beats:
                await record_heartbeat(redis, beat)
        finally:
            await redis.aclose()  # type: ignore[attr-defined]

    asyncio.run(store())


@pytest.fixture
def agents(app: FastAPI, tenant_factory: Callable[[], Tenant]) -> tuple[Tenant, Tenant, str, str]:
    """Tenants A and B; agent X (live) runs A's and B's cameras, agent Y (silent for 30 s)
    ran B's second camera. Returns (A, B, X's host, Y's host)."""
    a, b = tenant_factory(), tenant_factory()
    tag = uuid.uuid4().hex[:8]
    x, y = f"agent-x-{tag}", f"agent-y-{tag}"
    record(
        app,
        heartbeat(
            x, camera_status(a.client_id, a.camera_id), camera_status(b.client_id, b.camera_id)
        ),
        heartbeat(y, camera_status(b.client_id, f"{b.camera_id}-2"), age_s=30),
    )
    return a, b, f"{x}.host", f"{y}.host"


def test_agents_when_superadmin_then_every_agent_lost_ones_marked(
    app: FastAPI, agents: tuple[Tenant, Tenant, str, str], superadmin: str
) -> None:
    a, b, x_host, y_host = agents
    body = sign_in(app, superadmin).get("/api/v1/agents").json()
    assert body["available"]
    listed = {agent["host"]: agent for agent in body["agents"]}
    x, y = listed[x_host], listed[y_host]
    assert (x["state"], x["lost"], y["state"], y["lost"]) == ("live", False, "lost", True)
    assert x["capacity"] == 4 and x["partitions"] == [0, 1] and x["last_heartbeat_age_s"] < 15
    assert y["last_heartbeat_age_s"] >= 30
    assert {(c["client_id"], c["camera_id"], c["state"]) for c in x["cameras"]} == {
        (a.client_id, a.camera_id, "streaming"),
        (b.client_id, b.camera_id, "streaming"),
    }
    rows = {(r["client_id"], r["camera_id"]): r for r in body["cameras"]}
    assert rows[(a.client_id, a.camera_id)]["status"]["host"] == x_host


def test_agents_when_client_user_then_only_own_cameras_status(
    app: FastAPI, agents: tuple[Tenant, Tenant, str, str]
) -> None:
    a, b, x_host, y_host = agents
    for client in (a.as_(app, Role.viewer), bearer(app, a.api_key)):
        response = client.get("/api/v1/agents")
        body = response.json()
        # no agents' details, only A's camera with the host running it
        assert body["agents"] == [] and body["available"]
        [row] = body["cameras"]
        assert (row["client_id"], row["camera_id"], row["state"]) == (
            a.client_id, a.camera_id, "streaming",
        )  # fmt: skip
        status = row["status"]
        assert status["host"] == x_host and status["live"] and status["input_fps"] == 5.0
        assert status["frame_age_s"] < 15 and status["reconnects"] == 0
        # and nothing of B's: its client, cameras, or the host only B's camera runs on
        for secret in (b.client_id, b.camera_id, y_host):
            assert secret not in response.text
        page = client.get("/agents")
        assert page.status_code == 200 and a.camera_id in page.text and x_host in page.text
        assert b.client_id not in page.text and y_host not in page.text
    # B's second camera ran on the lost agent Y: it shows unknown (no camera row for it in
    # Postgres, so only B's first camera is listed), and B sees its own host only
    b_body = b.as_(app, Role.viewer).get("/api/v1/agents").json()
    assert [(r["camera_id"], r["status"]["host"]) for r in b_body["cameras"]] == [
        (b.camera_id, x_host)
    ]


def test_camera_when_reported_then_status_in_get_and_list(
    app: FastAPI, agents: tuple[Tenant, Tenant, str, str]
) -> None:
    a, _, x_host, _ = agents
    viewer = a.as_(app, Role.viewer)
    one = viewer.get(f"/api/v1/cameras/{a.camera_id}").json()
    assert one["status"]["state"] == "streaming" and one["status"]["host"] == x_host
    assert one["status"]["session_id"] == "20261201t133012-9c1e"
    assert one["status"]["reported_age_s"] < 15 and one["status"]["agent_id"].startswith("agent-x")
    [listed] = viewer.get("/api/v1/cameras").json()
    assert listed["status"] == {**one["status"], "frame_age_s": listed["status"]["frame_age_s"],
                                "reported_age_s": listed["status"]["reported_age_s"]}  # fmt: skip


def test_camera_when_never_reported_or_agent_lost_then_null_or_unknown(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    a = tenant_factory()
    viewer = a.as_(app, Role.viewer)
    assert viewer.get(f"/api/v1/cameras/{a.camera_id}").json()["status"] is None
    assert viewer.get("/api/v1/agents").json()["cameras"][0]["state"] == "unknown"
    # when its agent has been silent for 16 s (lost after 15 s)
    record(
        app, heartbeat(f"agent-{a.client_id}", camera_status(a.client_id, a.camera_id), age_s=16)
    )
    status = viewer.get(f"/api/v1/cameras/{a.camera_id}").json()["status"]
    assert status["state"] == "unknown" and not status["live"]
    # and when it reports again, fresh
    record(app, heartbeat(f"agent-{a.client_id}", camera_status(a.client_id, a.camera_id)))
    assert viewer.get(f"/api/v1/cameras/{a.camera_id}").json()["status"]["state"] == "streaming"


def test_live_badge_when_last_frame_stale_then_offline_though_streaming(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    a = tenant_factory()
    viewer = a.as_(app, Role.viewer)
    agent = f"agent-{a.client_id}"
    # given a streaming camera whose last frame was 2 s old when its agent reported
    fresh = camera_status(a.client_id, a.camera_id, last_capture_ts_ns=time.time_ns() - 2 * NS)
    record(app, heartbeat(agent, fresh))
    status = viewer.get(f"/api/v1/cameras/{a.camera_id}").json()["status"]
    assert status["live"] and status["frame_age_s"] >= 2
    for page in ("/cameras", f"/cameras/{a.camera_id}"):
        assert LIVE.findall(viewer.get(page).text) == ["live"], page
    # when the agent still says streaming but its last frame is 20 s old
    stale = camera_status(a.client_id, a.camera_id, last_capture_ts_ns=time.time_ns() - 20 * NS)
    record(app, heartbeat(agent, stale, age_s=-1))
    status = viewer.get(f"/api/v1/cameras/{a.camera_id}").json()["status"]
    # then the badge is off, the state stays what the agent says
    assert status["state"] == "streaming" and not status["live"] and status["frame_age_s"] >= 20
    for page in ("/cameras", f"/cameras/{a.camera_id}"):
        text = viewer.get(page).text
        assert LIVE.findall(text) == ["offline"] and STATE.findall(text) == ["streaming"], page


@pytest.fixture
def redis_down(app: FastAPI) -> Iterator[None]:
    """The dashboard's status reads go to a port nothing listens on (sessions keep theirs)."""
    res = resources(app)
    working = res.redis
    res.redis = Redis(host="127.0.0.1", port=1, socket_timeout=1, socket_connect_timeout=1)
    yield
    res.redis.close()
    res.redis = working


def test_status_when_redis_down_then_unknown_and_never_a_500(
    app: FastAPI,
    agents: tuple[Tenant, Tenant, str, str],
    superadmin: str,
    redis_down: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = agents[0]
    client = bearer(app, a.api_key)
    assert client.get(f"/api/v1/cameras/{a.camera_id}").json()["status"] is None
    assert client.get("/api/v1/cameras").json()[0]["status"] is None
    body = client.get("/api/v1/agents").json()
    assert not body["available"] and body["cameras"][0]["state"] == "unknown"
    for page in ("/cameras", f"/cameras/{a.camera_id}", "/agents"):
        assert client.get(page).status_code == 200, page
    assert "status store cannot be read" in client.get("/agents").text
    assert "camera status unavailable" in caplog.text


def test_delete_when_camera_reported_then_its_status_forgotten(
    app: FastAPI, tenant_factory: Callable[[], Tenant]
) -> None:
    a = tenant_factory()
    operator = a.as_(app, Role.operator)
    camera_id = f"{a.client_id}-gone"
    body = {"camera_id": camera_id, "name": "Gone", "url": "rtsp://10.2.3.4/v", "fps": 2}
    assert operator.post("/api/v1/cameras", json=body).status_code == 201
    record(app, heartbeat(f"agent-{a.client_id}", camera_status(a.client_id, camera_id)))
    redis = resources(app).redis
    assert stored_status(redis, a.client_id, camera_id) is not None
    assert operator.delete(f"/api/v1/cameras/{camera_id}").status_code == 204
    assert stored_status(redis, a.client_id, camera_id) is None
