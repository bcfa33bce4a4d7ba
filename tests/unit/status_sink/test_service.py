"""The status sink without services: one heartbeat per agent per batch, the gauges from the
store, and idle recomputation that outlives a Redis failure (batch retries are the runner's:
tests/integration/status)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from services.status_sink.service import AGENTS, CAMERAS, StatusSinkService, newest_per_agent
from tests.unit.test_agent_status import NOW, NS, beat, camera


class StoredAgents:
    """Answers the gauges' reads: agent a (live, c1 streaming, c2 failed) and agent b (lost,
    c3); the first ``failures`` reads fail."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.beats = {
            b"a": beat("a", NOW, camera("c1"), camera("c2", state="failed")).model_dump_json(),
            b"b": beat("b", NOW - 20 * NS, camera("c3")).model_dump_json(),
        }

    async def zremrangebyscore(self, *args: Any) -> int:
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("Connection refused")
        return 0

    async def zrevrange(self, *args: Any) -> list[bytes]:
        return list(self.beats)

    async def mget(self, keys: list[str]) -> list[str]:
        return [self.beats[k.rsplit(":", 1)[1].encode()] for k in keys]


class NoDeadLetters:
    async def publish(self, rejected: Any) -> None:
        raise AssertionError("nothing is dead-lettered here")


def test_newest_per_agent_when_several_beats_then_each_agents_latest() -> None:
    beats = [beat("a", NOW - 5 * NS), beat("b", NOW - 4 * NS), beat("a", NOW), beat("a", NOW - NS)]
    assert [(b.agent_id, b.sent_ts_ns) for b in newest_per_agent(beats)] == [
        ("a", NOW),
        ("b", NOW - 4 * NS),
    ]


async def test_gauges_when_store_read_then_cameras_and_agents_per_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("vidpipe.agent_status.time.time_ns", lambda: NOW + NS)
    sink = StatusSinkService(StoredAgents(), NoDeadLetters())  # type: ignore[arg-type]
    await sink.update_gauges()
    values = {s: CAMERAS.labels(s)._value.get() for s in ("streaming", "failed", "unknown")}
    assert values == {"streaming": 1, "failed": 1, "unknown": 1}
    assert CAMERAS.labels("reconnecting")._value.get() == 0
    assert (AGENTS.labels("live")._value.get(), AGENTS.labels("lost")._value.get()) == (1, 1)


async def test_idle_when_redis_fails_then_logged_and_next_idle_retries(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("vidpipe.agent_status.time.time_ns", lambda: NOW + NS)
    store = StoredAgents(failures=1)
    sink = StatusSinkService(store, NoDeadLetters(), gauges_every_s=0.0)  # type: ignore[arg-type]
    await sink.on_idle()  # Redis refuses: no exception, a warning
    assert "state gauges not updated" in caplog.text
    await sink.on_idle()
    assert AGENTS.labels("live")._value.get() == 1 and store.failures == 0
