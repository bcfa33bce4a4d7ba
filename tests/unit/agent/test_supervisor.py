"""One camera's supervised decoder: sessions, states, crash restarts, crash loops, refusals."""

from __future__ import annotations

import time

from services.agent.supervisor import (
    CameraSpec,
    CameraSupervisor,
    RestartPolicy,
    stalled_after_s,
)
from tests.unit.agent.fakes import FakeLaunch, settle
from vidpipe.sessions import SESSION_PATTERN

SPEC = CameraSpec("acme", "gate-1", "rtsp://10.0.0.5/s", fps=5.0)
FAST = RestartPolicy(initial_s=0.01, max_s=0.02, jitter_s=0.0, failed_retry_s=3600)


async def test_supervisor_when_started_then_starting_until_the_first_frame_then_streaming() -> None:
    launch = FakeLaunch()
    supervisor = CameraSupervisor(SPEC, launch, FAST)
    supervisor.start()
    await settle()
    [stream] = launch.streams
    assert stream.session_id == supervisor.session_id
    assert __import__("re").fullmatch(SESSION_PATTERN, stream.session_id)
    assert supervisor.state() == "starting"

    stream.frame()

    assert supervisor.state() == "streaming"
    await supervisor.stop()
    assert supervisor.state() == "stopped" and not stream.running


async def test_supervisor_when_no_frame_for_three_intervals_then_reconnecting() -> None:
    launch = FakeLaunch()
    supervisor = CameraSupervisor(SPEC, launch, FAST)
    supervisor.start()
    await settle()
    stream = launch.streams[0]
    now = time.time_ns()
    stream.frame(now)
    stalled_ns = int(stalled_after_s(SPEC.fps) * 1e9)

    assert supervisor.state(now + stalled_ns - 10**8) == "streaming"
    assert supervisor.state(now + stalled_ns + 10**8) == "reconnecting"
    stream.stats.reconnecting = True
    assert supervisor.state(now) == "reconnecting"
    await supervisor.stop()


def test_stalled_after_when_slow_camera_then_three_intervals_else_three_seconds() -> None:
    assert stalled_after_s(10.0) == 3.0
    assert stalled_after_s(0.5) == 6.0


async def test_supervisor_when_decoder_crashes_then_restarted_in_a_new_session() -> None:
    launch = FakeLaunch(lambda spec: "frames-then-crash")
    policy = RestartPolicy(initial_s=0.01, max_s=0.02, jitter_s=0.0, crash_limit=1000)
    supervisor = CameraSupervisor(SPEC, launch, policy)
    supervisor.start()
    await settle(0.3)
    await supervisor.stop()

    sessions = [s.session_id for s in launch.streams]
    assert len(sessions) >= 3, "restarted after each crash"
    assert len(set(sessions)) == len(sessions), "every start is a new session"
    assert supervisor.restarts == len(sessions) - 1
    assert supervisor.last_error == "RuntimeError: crashed after a frame"
    assert not supervisor.failed


async def test_supervisor_when_failed_camera_streamed_again_then_one_crash_is_not_failed() -> None:
    clock = {"now": 0.0}
    behaviour = {"now": "crash"}
    launch = FakeLaunch(lambda spec: behaviour["now"])
    policy = RestartPolicy(initial_s=10, max_s=10, jitter_s=0.0, failed_retry_s=3600)
    supervisor = CameraSupervisor(SPEC, launch, policy, clock=lambda: clock["now"])
    supervisor.failed = True  # a crash loop before
    supervisor.start()
    await settle()
    assert supervisor.state() == "failed"
    behaviour["now"], clock["now"] = "frames-then-crash", 1000.0

    supervisor.retry()
    await settle()

    assert not supervisor.failed, "a session that published frames starts a new crash series"
    assert supervisor.state() == "reconnecting", "backing off before the restart"
    await supervisor.stop()


async def test_supervisor_when_crash_limit_reached_in_the_window_then_failed_and_not_retried() -> (
    None
):
    launch = FakeLaunch(lambda spec: "crash")
    supervisor = CameraSupervisor(SPEC, launch, FAST)
    supervisor.start()
    await settle(0.5)

    assert len(launch.streams) == FAST.crash_limit, "no retry at full speed once failed"
    assert supervisor.state() == "failed"
    assert supervisor.last_error == "RuntimeError: decoder of gate-1 crashed"
    await supervisor.stop()


async def test_supervisor_when_failed_and_retried_then_starts_again_at_once() -> None:
    behaviour = {"now": "crash"}
    launch = FakeLaunch(lambda spec: behaviour["now"])
    supervisor = CameraSupervisor(SPEC, launch, FAST)
    supervisor.start()
    await settle(0.5)
    assert supervisor.state() == "failed"
    behaviour["now"] = "run"

    supervisor.retry()
    await settle()

    assert len(launch.streams) == FAST.crash_limit + 1
    assert supervisor.state() == "failed", "failed until the retry delivers a frame"
    launch.streams[-1].frame()
    assert supervisor.state() == "streaming"
    await supervisor.stop()


async def test_supervisor_when_source_refused_then_failed_at_once() -> None:
    launch = FakeLaunch(lambda spec: "refuse")
    supervisor = CameraSupervisor(SPEC, launch, FAST)
    supervisor.start()
    await settle(0.2)

    assert len(launch.streams) == 1
    assert supervisor.state() == "failed"
    assert supervisor.last_error is not None and "refused" in supervisor.last_error
    await supervisor.stop()


async def test_supervisor_when_crash_window_passed_then_crashes_forgotten() -> None:
    clock = {"now": 0.0}
    launch = FakeLaunch(lambda spec: "crash")
    policy = RestartPolicy(initial_s=0.01, max_s=0.01, jitter_s=0.0, crash_limit=3)

    def tick() -> float:
        clock["now"] += 40.0  # each crash 40 s after the last: never 3 within 60 s
        return clock["now"]

    supervisor = CameraSupervisor(SPEC, launch, policy, clock=tick)
    supervisor.start()
    await settle(0.3)
    await supervisor.stop()

    assert len(launch.streams) > 3 and not supervisor.failed


async def test_supervisor_when_stream_ends_then_stopped_until_retried_in_a_new_session() -> None:
    launch = FakeLaunch(lambda spec: "end")
    supervisor = CameraSupervisor(SPEC, launch, FAST)
    supervisor.start()
    await settle()
    assert supervisor.state() == "stopped" and len(launch.streams) == 1

    supervisor.retry()
    await settle()

    assert len(launch.streams) == 2
    assert launch.streams[0].session_id != launch.streams[1].session_id
    await supervisor.stop()


def test_restart_policy_when_crashes_grow_then_delay_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(initial_s=1.0, max_s=5.0, jitter_s=0.0)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
