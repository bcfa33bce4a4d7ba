"""Owned cameras converge to their rows: start, restart on URL/rate change, stop, capacity."""

from __future__ import annotations

from services.agent.owned import CameraRow, OwnedCameras
from services.agent.supervisor import RestartPolicy
from tests.unit.agent.fakes import FakeLaunch, settle

POLICY = RestartPolicy(initial_s=0.01, max_s=0.01, jitter_s=0.0, failed_retry_s=3600)


def row(camera: str, enabled: bool = True, url: str | None = None, fps: float = 5.0) -> CameraRow:
    return CameraRow("acme", camera, enabled, fps, url or f"rtsp://10.0.0.5/{camera}")


def states(owned: OwnedCameras) -> dict[str, str]:
    return {r.status.camera_id: r.status.state for r in owned.reports()}


async def test_owned_when_more_enabled_cameras_than_capacity_then_the_rest_unassigned() -> None:
    launch = FakeLaunch()
    owned = OwnedCameras(launch, POLICY, capacity=2)

    await owned.apply({r.key: r for r in (row("c"), row("a"), row("b"))})
    await settle()

    assert states(owned) == {"a": "starting", "b": "starting", "c": "unassigned"}
    assert sorted(s.spec.camera_id for s in launch.streams) == ["a", "b"]
    await owned.stop_all()


async def test_owned_when_a_running_camera_is_disabled_then_a_waiting_one_gets_its_slot() -> None:
    launch = FakeLaunch()
    owned = OwnedCameras(launch, POLICY, capacity=2)
    await owned.apply({r.key: r for r in (row("a"), row("b"), row("c"))})
    await settle()
    [a_stream] = launch.of("a")

    await owned.apply({("acme", "a"): row("a", enabled=False)})
    await settle()

    assert not a_stream.running, "stopped before apply returned"
    assert states(owned) == {"a": "stopped", "b": "starting", "c": "starting"}
    await owned.stop_all()


async def test_owned_when_url_or_rate_changes_then_restarted_in_a_new_session() -> None:
    launch = FakeLaunch()
    owned = OwnedCameras(launch, POLICY, capacity=4)
    await owned.apply({("acme", "a"): row("a")})
    await settle()

    await owned.apply({("acme", "a"): row("a")}, retry=[("acme", "a")])  # e.g. a name edit
    await settle()
    assert len(launch.of("a")) == 1, "same URL and rate: left running"

    await owned.apply({("acme", "a"): row("a", url="rtsp://10.0.0.6/new")})
    await settle()
    await owned.apply({("acme", "a"): row("a", url="rtsp://10.0.0.6/new", fps=2.0)})
    await settle()

    first, second, third = launch.of("a")
    assert not first.running and not second.running and third.running
    assert (second.spec.url, third.spec.fps) == ("rtsp://10.0.0.6/new", 2.0)
    assert len({first.session_id, second.session_id, third.session_id}) == 3
    await owned.stop_all()


async def test_owned_when_camera_deleted_then_reported_stopped_once() -> None:
    launch = FakeLaunch()
    owned = OwnedCameras(launch, POLICY, capacity=4)
    await owned.apply({("acme", "a"): row("a")})
    await settle()

    await owned.apply({("acme", "a"): None})

    assert not launch.streams[0].running
    assert states(owned) == {"a": "stopped"}
    assert states(owned) == {}, "reported once, then forgotten"


async def test_owned_when_url_cannot_be_opened_then_failed_with_the_reason() -> None:
    owned = OwnedCameras(FakeLaunch(), POLICY, capacity=4)
    broken = CameraRow("acme", "a", True, 5.0, None, error="sealed with a key not configured")

    await owned.apply({broken.key: broken})

    [report] = owned.reports()
    assert report.status.state == "failed"
    assert report.status.last_error == "sealed with a key not configured"


async def test_owned_when_released_then_decoders_stopped_and_cameras_forgotten() -> None:
    launch = FakeLaunch()
    owned = OwnedCameras(launch, POLICY, capacity=4)
    await owned.apply({r.key: r for r in (row("a"), row("b"))})
    await settle()

    await owned.release([("acme", "a")])

    assert [s.running for s in launch.streams] == [False, True]
    assert states(owned) == {"b": "starting"}
    await owned.stop_all()


async def test_owned_when_failed_camera_changes_then_retried() -> None:
    behaviour = {"now": "refuse"}
    launch = FakeLaunch(lambda spec: behaviour["now"])
    owned = OwnedCameras(launch, POLICY, capacity=4)
    await owned.apply({("acme", "a"): row("a")})
    await settle()
    assert states(owned) == {"a": "failed"}
    behaviour["now"] = "run"

    await owned.apply({("acme", "a"): row("a")}, retry=[("acme", "a")])
    await settle()

    assert len(launch.streams) == 2 and launch.streams[1].running
    await owned.stop_all()


async def test_owned_when_all_stopped_then_every_camera_reported_stopped_and_none_starts() -> None:
    launch = FakeLaunch()
    owned = OwnedCameras(launch, POLICY, capacity=1)
    await owned.apply({r.key: r for r in (row("a"), row("b"))})
    await settle()

    await owned.stop_all()
    await owned.apply({("acme", "c"): row("c")})

    assert states(owned) == {"a": "stopped", "b": "stopped", "c": "stopped"}
    assert [s.spec.camera_id for s in launch.streams] == ["a"] and not launch.streams[0].running
