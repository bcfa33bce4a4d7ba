"""Camera status as the dashboard shows it, from views alone (no Redis): the status object,
null for unreported cameras, unknown for a lost agent's, and agents' rows."""

from __future__ import annotations

from typing import Any

from services.dashboard.camera_status import CameraStatusOut, agent_out, with_status
from tests.unit.test_agent_status import NOW, NS, beat, camera
from vidpipe.agent_status import AgentView, CameraView
from vidpipe.cameras import Camera


def _camera(camera_id: str, client_id: str = "acme") -> Camera:
    return Camera(
        camera_id=camera_id, client_id=client_id, name=None, url="rtsp://h/s", fps=5, enabled=True
    )


def _view(sent: int, **fields: Any) -> CameraView:
    status = camera("gate-1", last_capture_ts_ns=sent - NS, **fields)
    return CameraView(agent_id="agent-a", host="a.example", sent_ts_ns=sent, status=status)


def test_with_status_when_reported_then_status_else_null() -> None:
    views = {("acme", "gate-1"): _view(NOW - 2 * NS, input_fps=4.5, reconnects=3)}
    shown = with_status([_camera("gate-1"), _camera("gate-2")], views, NOW)
    status = shown[0].status
    assert status == CameraStatusOut(
        state="streaming", session_id=None, input_fps=4.5, output_fps=0.0, frame_age_s=3.0,
        live=True, reconnects=3, restarts=0, last_error=None, agent_id="agent-a",
        host="a.example", reported_age_s=2.0,
    )  # fmt: skip
    assert shown[1].status is None
    assert shown[0].camera_id == "gate-1" and shown[0].url == "rtsp://h/s"


def test_with_status_when_another_clients_camera_has_the_id_then_not_mixed() -> None:
    views = {("other", "gate-1"): _view(NOW)}
    assert with_status([_camera("gate-1")], views, NOW)[0].status is None


def test_with_status_when_agent_lost_or_store_unreadable_then_unknown_or_null() -> None:
    lost = with_status([_camera("gate-1")], {("acme", "gate-1"): _view(NOW - 16 * NS)}, NOW)
    assert lost[0].status is not None
    assert lost[0].status.state == "unknown" and not lost[0].status.live
    assert with_status([_camera("gate-1")], None, NOW)[0].status is None


def test_agent_out_when_heartbeat_then_row_with_age_and_cameras() -> None:
    sent = NOW - 20 * NS
    row = agent_out(AgentView(beat("agent-a", sent, camera("c1"), partitions=(3,)), True), NOW)
    assert (row.agent_id, row.host, row.state, row.lost) == (
        "agent-a",
        "agent-a.example",
        "lost",
        True,
    )
    assert row.last_heartbeat_age_s == 20.0 and row.partitions == [3] and row.capacity == 4
    assert [(c.client_id, c.camera_id, c.state) for c in row.cameras] == [
        ("acme", "c1", "streaming")
    ]
