"""A stalled RTSP server (SIGSTOP for 30 s) shows as ``reconnecting`` within 15 s in the
heartbeats and in the status store the dashboard reads, and ``streaming`` again after
SIGCONT."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from functools import partial

import pytest
from redis import Redis

from tests.integration.agent.conftest import Agents, HeartbeatWatch, add_camera
from tests.integration.decoder.conftest import RtspServer
from vidpipe.agent_status import camera_status
from vidpipe.settings import ServiceSettings

pytestmark = pytest.mark.integration

STALL_S = 30.0


def test_agent_when_rtsp_server_stalls_then_reconnecting_within_15_s_and_streaming_after(
    client_id: str,
    agents: Agents,
    heartbeats: HeartbeatWatch,
    rtsp: Callable[[], RtspServer],
    stack_settings: ServiceSettings,
) -> None:
    server = rtsp()
    agent_id, _ = agents.start()  # heartbeats every 5 s, as deployed
    camera = f"{client_id}-stall"
    add_camera(stack_settings, client_id, camera, server.url)
    heartbeats.wait(partial(heartbeats.reported, camera, "streaming"), 60, "streaming")
    assert server.proc is not None
    redis = Redis.from_url(stack_settings.redis.url)

    os.kill(server.proc.pid, signal.SIGSTOP)
    stalled = time.monotonic()
    try:
        seen = heartbeats.wait(
            partial(heartbeats.reported, camera, "reconnecting", stalled), 20, "reconnecting"
        )
        view = camera_status(redis, client_id, camera)
        assert view is not None and view.agent_id == agent_id
        assert view.state() == "reconnecting" and not view.live()
        time.sleep(max(0.0, stalled + STALL_S - time.monotonic()))
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    resumed = time.monotonic()
    back = heartbeats.wait(
        partial(heartbeats.reported, camera, "streaming", resumed), 45, "streaming again"
    )
    view = camera_status(redis, client_id, camera)
    assert view is not None and view.state() == "streaming"
    redis.close()

    reconnecting_s, streaming_s = seen - stalled, back - resumed
    assert reconnecting_s <= 15
    print(
        f"\nstalled RTSP server: 'reconnecting' reported {reconnecting_s:.1f} s after SIGSTOP"
        f" (<= 15 s, heartbeat every 5 s); 'streaming' again {streaming_s:.1f} s after SIGCONT"
        f" ({STALL_S:.0f} s stall)"
    )
