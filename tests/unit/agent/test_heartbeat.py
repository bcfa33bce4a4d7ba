"""Heartbeats: rates over the interval, per session; agent ids that follow the id rule."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.agent.heartbeat import Heartbeats, default_agent_id
from services.agent.owned import CameraReport
from vidpipe.events import AgentHeartbeat, CameraStatus, parse_event
from vidpipe.ids import is_valid_id

S = 1_000_000_000


def report(
    state: str, session: str | None, read: int, published: int, started_ns: int | None = None
) -> CameraReport:
    status = CameraStatus.model_validate(
        {
            "client_id": "acme",
            "camera_id": "gate-1",
            "state": state,
            "session_id": session,
            "frames_published": published,
        }
    )
    return CameraReport(status, read, started_ns)


def test_heartbeats_when_counters_grow_then_rates_over_the_interval() -> None:
    beats = Heartbeats("host-1", "host", "1.0", 16, started_ts_ns=1 * S)
    first = beats.build([report("streaming", "s1", 10, 9)], [3, 1], now_ns=100 * S)
    second = beats.build([report("streaming", "s1", 35, 29)], [1, 3], now_ns=105 * S)

    assert first.cameras[0].input_fps == 0.0, "no interval yet"
    [camera] = second.cameras
    assert (camera.input_fps, camera.output_fps) == (5.0, 4.0)
    assert second.partitions == (1, 3)
    assert parse_event(AgentHeartbeat, second.model_dump_json().encode()) == second


def test_heartbeats_when_session_changes_then_rates_since_its_start() -> None:
    beats = Heartbeats("host-1", "host", "1.0", 16, started_ts_ns=1 * S)
    beats.build([report("streaming", "s1", 100, 100, started_ns=1 * S)], [], now_ns=100 * S)

    after = beats.build([report("streaming", "s2", 8, 6, started_ns=102 * S)], [], now_ns=104 * S)

    assert (after.cameras[0].input_fps, after.cameras[0].output_fps) == (4.0, 3.0)


def test_heartbeats_when_built_then_the_state_gauge_counts_cameras() -> None:
    beats = Heartbeats("host-1", "host", "1.0", 16, started_ts_ns=1 * S)
    beats.build([report("streaming", "s1", 1, 1), report("failed", None, 0, 0)], [0], now_ns=2 * S)

    def gauge(state: str) -> float | None:
        return REGISTRY.get_sample_value("vidpipe_agent_cameras", {"state": state})

    assert (gauge("streaming"), gauge("failed"), gauge("unassigned")) == (1.0, 1.0, 0.0)


def test_default_agent_id_when_host_name_is_odd_or_long_then_a_valid_id_with_the_pid() -> None:
    for host in ("gpu-node-7.example.com", "_weird host!", "x" * 200, ""):
        agent_id = default_agent_id(host, pid=4242)
        assert is_valid_id(agent_id) and agent_id.endswith("-4242"), agent_id
