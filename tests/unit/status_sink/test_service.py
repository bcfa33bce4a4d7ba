"""The status sink without services: one heartbeat per agent per batch, and Redis failures
retried with backoff until Redis answers or the process stops (never dead-lettered)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from services.status_sink.service import AGENTS, CAMERAS, StatusSinkService, newest_per_agent
from tests.unit.test_agent_status import NOW, NS, beat, camera


class FailingRedis:
    """Answers the gauges' reads (one live agent with one streaming camera) after failing
    ``failures`` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.beat = beat("agent-a", NOW, camera("c1")).model_dump_json()

    async def zremrangebyscore(self, *args: Any) -> int:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("Connection refused")
        return 0

    async def zrevrange(self, *args: Any) -> list[bytes]:
        return [b"agent-a"]

    async def mget(self, keys: list[str]) -> list[str]:
        return [self.beat]


class NoDeadLetters:
    async def publish(self, rejected: Any) -> None:
        raise AssertionError("nothing is dead-lettered here")


def test_newest_per_agent_when_several_beats_then_each_agents_latest() -> None:
    beats = [beat("a", NOW - 5 * NS), beat("b", NOW - 4 * NS), beat("a", NOW), beat("a", NOW - NS)]
    assert [(b.agent_id, b.sent_ts_ns) for b in newest_per_agent(beats)] == [
        ("a", NOW),
        ("b", NOW - 4 * NS),
    ]


async def test_gauges_when_redis_fails_twice_then_retried_and_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("vidpipe.agent_status.time.time_ns", lambda: NOW + NS)
    redis = FailingRedis(failures=2)
    sink = StatusSinkService(redis, NoDeadLetters(), asyncio.Event(), retry_max_s=0.01)  # type: ignore[arg-type]
    await sink._retrying(sink.update_gauges)
    assert redis.calls == 3
    assert CAMERAS.labels("streaming")._value.get() == 1
    assert CAMERAS.labels("unknown")._value.get() == 0
    assert AGENTS.labels("live")._value.get() == 1


async def test_retry_when_stopped_while_redis_down_then_raises() -> None:
    stop = asyncio.Event()
    stop.set()
    sink = StatusSinkService(FailingRedis(failures=99), NoDeadLetters(), stop)  # type: ignore[arg-type]
    with pytest.raises(RedisConnectionError):
        await sink._retrying(sink.update_gauges)
