"""The agent: partitions decide which cameras it runs; events and reconciles re-read rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import OperationalError

from services.agent.owned import CameraKey, CameraRow, OwnedCameras
from services.agent.ownership import control_partition
from services.agent.service import RETRY_READ_S, Agent
from services.agent.supervisor import RestartPolicy
from tests.unit.agent.fakes import FakeLaunch, settle
from tests.unit.fakes import record
from vidpipe.control import camera_change
from vidpipe.topics import CAMERAS_CONTROL

PARTITIONS = list(range(12))
POLICY = RestartPolicy(initial_s=0.01, max_s=0.01, jitter_s=0.0, failed_retry_s=3600)


class FakeRows:
    """Camera rows in memory; ``down`` makes every read fail like an unreachable Postgres."""

    def __init__(self, *rows: CameraRow) -> None:
        self.rows = {r.key: r for r in rows}
        self.down = False
        self.reads = 0

    def load(self, owns: Callable[[CameraKey], bool]) -> dict[CameraKey, CameraRow]:
        self._read()
        return {k: r for k, r in self.rows.items() if owns(k)}

    def get(self, key: CameraKey) -> CameraRow | None:
        self._read()
        return self.rows.get(key)

    def _read(self) -> None:
        self.reads += 1
        if self.down:
            raise OperationalError("SELECT", {}, Exception("connection refused"))


class FakeDeadLetters:
    def __init__(self) -> None:
        self.rejected: list[Any] = []

    async def publish(self, rejected: list[Any]) -> None:
        self.rejected += rejected


def row(camera: str, enabled: bool = True, url: str = "rtsp://10.0.0.5/s") -> CameraRow:
    return CameraRow("acme", camera, enabled, 5.0, url)


def partition(camera: str) -> int:
    return control_partition("acme", camera, PARTITIONS)


def event(camera: str, action: str = "updated", offset: int = 0) -> Any:
    key, value = camera_change("acme", camera, action)  # type: ignore[arg-type]
    rec = record(CAMERAS_CONTROL, value, offset=offset, key=key)
    return dataclasses.replace(rec, partition=partition(camera))


def cameras_in(count: int, partitions: set[int], inside: bool = True) -> list[str]:
    """``count`` camera ids whose control partition is (or is not) in ``partitions``."""
    found = (f"cam-{i}" for i in range(10_000))
    return [c for c in found if (partition(c) in partitions) == inside][:count]


def agent_of(rows: FakeRows, clock: Callable[[], float] = lambda: 0.0) -> tuple[Agent, FakeLaunch]:
    launch = FakeLaunch()
    agent = Agent(
        OwnedCameras(launch, POLICY, 16), rows, FakeDeadLetters(),  # type: ignore[arg-type]
        reconcile_s=30.0, clock=clock,
    )  # fmt: skip
    return agent, launch


def running(launch: FakeLaunch) -> set[str]:
    return {s.spec.camera_id for s in launch.streams if s.running}


async def test_agent_when_partitions_assigned_then_runs_exactly_their_enabled_cameras() -> None:
    mine, theirs = cameras_in(3, {0, 1, 2}), cameras_in(3, {0, 1, 2}, inside=False)
    rows = FakeRows(*(row(c) for c in mine + theirs), row(mine[0] + "x", enabled=False))
    agent, launch = agent_of(rows)

    await agent.assigned({0, 1, 2}, PARTITIONS)
    await settle()

    assert running(launch) == set(mine)
    await agent.shutdown()
    assert running(launch) == set()


async def test_agent_when_partitions_revoked_then_their_decoders_stop_before_it_returns() -> None:
    [a], [b] = cameras_in(1, {0}), cameras_in(1, {1})
    agent, launch = agent_of(FakeRows(row(a), row(b)))
    await agent.assigned({0, 1}, PARTITIONS)
    await settle()

    await agent.revoked({0})

    assert running(launch) == {b}
    assert agent.partitions == {1}
    assert {r.status.camera_id for r in agent.cameras.reports()} == {b}
    await agent.shutdown()


async def test_agent_when_camera_changed_then_row_reread_and_decoder_follows() -> None:
    [cam] = cameras_in(1, set(PARTITIONS))
    rows = FakeRows(row(cam))
    agent, launch = agent_of(rows)
    await agent.assigned(set(PARTITIONS), PARTITIONS)
    await settle()

    rows.rows[("acme", cam)] = row(cam, url="rtsp://10.0.0.9/moved")
    await agent.handle([event(cam, "updated")])
    await settle()
    assert [s.spec.url for s in launch.streams if s.running] == ["rtsp://10.0.0.9/moved"]

    rows.rows[("acme", cam)] = row(cam, enabled=False, url="rtsp://10.0.0.9/moved")
    await agent.handle([event(cam, "disabled")])
    assert running(launch) == set()
    assert [r.status.state for r in agent.cameras.reports()] == ["stopped"]

    del rows.rows[("acme", cam)]
    await agent.handle([event(cam, "deleted")])
    assert [r.status.state for r in agent.cameras.reports()] == ["stopped"]
    assert agent.cameras.reports() == []


async def test_agent_when_event_is_invalid_then_dead_lettered_and_the_rest_handled() -> None:
    [cam] = cameras_in(1, set(PARTITIONS))
    rows = FakeRows(row(cam))
    agent, launch = agent_of(rows)
    await agent.assigned(set(PARTITIONS), PARTITIONS)
    bad = record(CAMERAS_CONTROL, b'{"camera_id": 1}', offset=1)

    await agent.handle([bad, event(cam, "created", offset=2)])

    assert [r.record.offset for r in agent._dead_letters.rejected] == [1]  # type: ignore[union-attr]
    await settle()
    assert running(launch) == {cam}
    await agent.shutdown()


async def test_agent_when_rows_drift_without_an_event_then_the_reconcile_fixes_it() -> None:
    now = {"t": 0.0}
    [a, b] = cameras_in(2, set(PARTITIONS))
    rows = FakeRows(row(a))
    agent, launch = agent_of(rows, clock=lambda: now["t"])
    await agent.assigned(set(PARTITIONS), PARTITIONS)
    await settle()
    rows.rows[("acme", b)] = row(b)  # its "created" event was lost
    del rows.rows[("acme", a)]

    await agent.reconcile_if_due()
    assert running(launch) == {a}, "not due yet"
    now["t"] = 31.0
    await agent.reconcile_if_due()
    await settle()

    assert running(launch) == {b}
    await agent.shutdown()


async def test_agent_when_postgres_is_down_during_an_event_then_a_reconcile_comes_soon() -> None:
    now = {"t": 0.0}
    [cam] = cameras_in(1, set(PARTITIONS))
    rows = FakeRows()
    agent, launch = agent_of(rows, clock=lambda: now["t"])
    await agent.assigned(set(PARTITIONS), PARTITIONS)
    rows.rows[("acme", cam)] = row(cam)
    rows.down = True

    await agent.handle([event(cam, "created")])
    rows.down = False
    now["t"] = RETRY_READ_S + 0.1
    await agent.reconcile_if_due()
    await settle()

    assert running(launch) == {cam}
    await agent.shutdown()
