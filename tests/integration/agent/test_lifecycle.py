"""One agent follows a camera's lifecycle through the API: created -> frames in S3, URL
edited -> restarted on the new URL in a new session, disabled -> no new frames; restarted
five times -> five sessions, no object overwritten. Figures are printed (run with -s)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.dashboard import accounts
from services.dashboard.accounts import ApiKeyIn
from services.dashboard.app import create_app
from services.dashboard.auth import Principal, Role
from services.dashboard.settings import DashboardSettings
from tests.integration.agent.conftest import Agents, Frames, HeartbeatWatch, StoredFrame
from tests.integration.dashboard.conftest import GENEROUS, resources
from tests.integration.decoder.conftest import RtspServer

pytestmark = pytest.mark.integration

FPS = 2.0


@pytest.fixture
def api(client_id: str) -> Iterator[TestClient]:
    """The dashboard API as an operator of ``client_id`` (the URL policy lets cameras
    reach the test's RTSP servers on loopback)."""
    settings = DashboardSettings.model_validate(GENEROUS | {"cameras": {"allow": ["127.0.0.1/32"]}})
    app = create_app(settings)
    admin = Principal(name="test", role=Role.admin, client_id=client_id)
    with resources(app).engine.connect() as conn:
        key = accounts.create_api_key(conn, admin, ApiKeyIn(name="agent test"))
    yield TestClient(app, headers={"Authorization": f"Bearer {key.key}"})
    resources(app).close()


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, step_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(step_s)
    pytest.fail(f"no {what} within {timeout_s} s")


def ready_agent(agents: Agents, heartbeats: HeartbeatWatch) -> str:
    """An agent started and owning every control partition."""
    agent_id, _ = agents.start()
    heartbeats.wait(
        lambda: (beat := heartbeats.latest(agent_id)) and len(beat.partitions) > 0,
        60,
        f"heartbeat of {agent_id} with partitions",
    )
    return agent_id


def camera_body(url: str, enabled: bool = True) -> dict[str, Any]:
    return {"name": "agent test", "url": url, "fps": FPS, "enabled": enabled}


def test_agent_when_camera_created_edited_disabled_through_the_api_then_decoder_follows(
    api: TestClient,
    client_id: str,
    agents: Agents,
    heartbeats: HeartbeatWatch,
    frames: Frames,
    rtsp: Callable[[], RtspServer],
) -> None:
    first, second = rtsp(), rtsp()
    ready_agent(agents, heartbeats)
    camera = f"{client_id}-cam"

    created = time.monotonic()
    response = api.post("/api/v1/cameras", json={"camera_id": camera, **camera_body(first.url)})
    assert response.status_code == 201, response.text
    frame = wait_for(partial(frames.new_session, client_id, camera, set()), 10, "first frame in S3")
    first_frame_s = time.monotonic() - created

    first.stop()  # from now on only the new URL can deliver frames
    edited = time.monotonic()
    response = api.put(f"/api/v1/cameras/{camera}", json=camera_body(second.url))
    assert response.status_code == 200, response.text
    moved = wait_for(
        partial(frames.new_session, client_id, camera, {frame.session}),
        10,
        "a frame of a new session from the new URL",
    )
    restart_s = time.monotonic() - edited
    assert moved.session != frame.session

    disabled = time.monotonic()
    response = api.put(f"/api/v1/cameras/{camera}", json=camera_body(second.url, enabled=False))
    assert response.status_code == 200, response.text
    heartbeats.wait(
        partial(heartbeats.reported, camera, "stopped", disabled), 10, "the camera reported stopped"
    )
    last_change, count = disabled, len(frames.list(client_id, camera))
    while time.monotonic() < disabled + 8:
        now = len(frames.list(client_id, camera))
        if now != count:
            last_change, count = time.monotonic(), now
        time.sleep(0.25)
    stopped_s = last_change - disabled
    assert stopped_s <= 5, f"frames kept coming {stopped_s:.1f} s after the camera was disabled"

    print(
        f"\nagent lifecycle: first frame in S3 {first_frame_s:.2f} s after create (<= 10);"
        f" URL edit -> first frame of the new session {restart_s:.2f} s;"
        f" disable -> last new frame {stopped_s:.2f} s after (<= 5), none in the 8 s after"
    )


def test_agent_when_camera_restarted_five_times_then_five_sessions_and_nothing_overwritten(
    api: TestClient,
    client_id: str,
    agents: Agents,
    heartbeats: HeartbeatWatch,
    frames: Frames,
    rtsp: Callable[[], RtspServer],
) -> None:
    server = rtsp()
    ready_agent(agents, heartbeats)
    camera = f"{client_id}-five"
    response = api.post(
        "/api/v1/cameras", json={"camera_id": camera, **camera_body(server.url, enabled=False)}
    )
    assert response.status_code == 201, response.text
    seen: dict[str, StoredFrame] = {}
    sessions: list[str] = []

    for _ in range(5):
        response = api.put(f"/api/v1/cameras/{camera}", json=camera_body(server.url))
        assert response.status_code == 200, response.text
        frame = wait_for(
            partial(frames.new_session, client_id, camera, set(sessions)),
            10,
            "a frame of a new session",
        )
        sessions.append(frame.session)
        three = partial(frames.holds, client_id, camera, frame.session, 3)
        wait_for(three, 10, "three frames of the session")
        response = api.put(f"/api/v1/cameras/{camera}", json=camera_body(server.url, False))
        assert response.status_code == 200, response.text
        since = time.monotonic()
        stopped = partial(heartbeats.reported, camera, "stopped", since)
        heartbeats.wait(stopped, 10, "the camera reported stopped")
        for stored in frames.list(client_id, camera):
            assert seen.setdefault(stored.key, stored) == stored, f"{stored.key} overwritten"

    final = frames.list(client_id, camera)
    assert len({f.session for f in final}) == 5 == len(set(sessions))
    assert {f.key: f for f in final} == seen, "every object as first stored, none lost"
    per_session = {s: sum(f.session == s for f in final) for s in sessions}
    print(f"\nfive restarts: 5 sessions, {len(final)} objects, none overwritten: {per_session}")
