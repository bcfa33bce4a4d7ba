"""The status store's rules that need no Redis: states, the Live badge, dropped cameras and
the gauges' census (the Redis side is tested in tests/integration/status)."""

from __future__ import annotations

from typing import Any

from vidpipe.agent_status import (
    AGENT_STATES,
    LIVE_WITHIN_S,
    LOST_AFTER_S,
    SHOWN_STATES,
    AgentView,
    CameraView,
    agent_census,
    camera_census,
    dropped_cameras,
)
from vidpipe.events import AgentHeartbeat, CameraStatus

NS = 1_000_000_000
NOW = 1_800_000_000 * NS


def camera(camera_id: str = "gate-1", client_id: str = "acme", **fields: Any) -> CameraStatus:
    return CameraStatus(
        client_id=client_id, camera_id=camera_id, **({"state": "streaming"} | fields)
    )


def beat(
    agent_id: str = "agent-a", sent: int = NOW, *cams: CameraStatus, **fields: Any
) -> AgentHeartbeat:
    return AgentHeartbeat(
        agent_id=agent_id,
        host=f"{agent_id}.example",
        version="1",
        capacity=4,
        started_ts_ns=NOW - 3600 * NS,
        sent_ts_ns=sent,
        cameras=cams,
        **fields,
    )


def view(sent: int, last_capture: int | None, state: str = "streaming") -> CameraView:
    status = camera(state=state, last_capture_ts_ns=last_capture)
    return CameraView(agent_id="agent-a", host="h", sent_ts_ns=sent, status=status)


def test_camera_state_when_agent_silent_beyond_lost_after_then_unknown() -> None:
    assert view(NOW - int((LOST_AFTER_S - 1) * NS), NOW).state(NOW) == "streaming"
    assert view(NOW - int((LOST_AFTER_S + 1) * NS), NOW).state(NOW) == "unknown"


def test_live_when_frame_fresh_at_a_fresh_report_then_live() -> None:
    # the agent reported 4 s ago a frame 3 s old at the time: 7 s old now, yet streaming
    seen = view(NOW - 4 * NS, NOW - 7 * NS)
    assert seen.live(NOW)
    assert seen.frame_age_s(NOW) == 7.0 and seen.report_age_s(NOW) == 4.0


def test_live_when_last_frame_older_than_live_within_at_report_then_not_live() -> None:
    assert not view(NOW, NOW - int((LIVE_WITHIN_S + 0.5) * NS)).live(NOW)


def test_live_when_report_missed_a_heartbeat_then_not_live() -> None:
    assert not view(NOW - 11 * NS, NOW - 11 * NS).live(NOW)


def test_live_when_not_streaming_or_no_frame_or_agent_lost_then_not_live() -> None:
    assert not view(NOW, NOW, state="reconnecting").live(NOW)
    assert not view(NOW, None).live(NOW)
    assert view(NOW, None).frame_age_s(NOW) is None
    assert not view(NOW - 20 * NS, NOW - 20 * NS).live(NOW)


def test_dropped_when_agent_stops_reporting_a_camera_then_only_that_one() -> None:
    before = beat("a", NOW - 5 * NS, camera("c1"), camera("c2"), camera("c1", client_id="other"))
    after = beat("a", NOW, camera("c1"))
    assert dropped_cameras(before, after) == {("acme", "c2"), ("other", "c1")}
    assert dropped_cameras(None, after) == set()


def test_dropped_when_clean_stop_then_every_camera_of_both_beats() -> None:
    before = beat("a", NOW - 5 * NS, camera("c1"), camera("c2"))
    stopping = beat("a", NOW, camera("c3", state="stopped"), stopping=True)
    assert dropped_cameras(before, stopping) == {("acme", "c1"), ("acme", "c2"), ("acme", "c3")}


def test_agent_state_when_stopping_lost_or_live() -> None:
    assert AgentView(beat(), lost=False).state == "live"
    assert AgentView(beat(), lost=True).state == "lost"
    assert AgentView(beat(stopping=True), lost=True).state == "stopped"
    counts = agent_census([AgentView(beat(), False), AgentView(beat("b"), True)])
    assert counts == {"live": 1, "lost": 1, "stopped": 0}
    assert set(counts) == set(AGENT_STATES)


def test_census_when_camera_moved_from_lost_agent_then_counted_once_as_the_newest_says() -> None:
    # given agent a, lost, that ran c1 and c2; b took c1 over and runs c3 (reconnecting)
    a = beat("a", NOW - 30 * NS, camera("c1"), camera("c2"))
    b = beat("b", NOW - 2 * NS, camera("c1"), camera("c3", state="reconnecting"))
    stopped = beat("c", NOW - 1 * NS, camera("c4"), stopping=True)
    agents = [AgentView(x, x.sent_ts_ns < NOW - 15 * NS) for x in (a, b, stopped)]
    # when the cameras are counted
    counts = camera_census(agents, NOW)
    # then c1 streams (b's), c2 is unknown (a is lost), c3 reconnects, c4 is not counted
    assert counts["streaming"] == 1 and counts["unknown"] == 1 and counts["reconnecting"] == 1
    assert sum(counts.values()) == 3
    assert set(counts) == set(SHOWN_STATES)
