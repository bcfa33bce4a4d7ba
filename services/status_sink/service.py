"""Why a sink: agents publish heartbeats to Kafka instead of writing Redis themselves, so
an agent needs no Redis credentials, a Redis outage never stalls a camera, and the store has
one writer (:mod:`vidpipe.agent_status`). The sink keeps, per batch, each agent's newest
heartbeat, records it, then recomputes the state gauges from the store; a poll that returns
nothing recomputes them too (every ``gauges_every_s``), so an agent that dies turns *lost*
on the gauges without a new message.

A heartbeat that does not validate is dead-lettered. A Redis outage is not the message's
fault: the batch is retried with exponential backoff until Redis answers (or the process is
stopped, which then exits without committing), and never dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from aiokafka import ConsumerRecord
from prometheus_client import Counter, Gauge
from redis import asyncio as aioredis
from redis.exceptions import RedisError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
)

from vidpipe.agent_status import (
    agent_census,
    camera_census,
    read_agents,
    record_heartbeat,
)
from vidpipe.bus import DeadLetterPublisher, Rejected
from vidpipe.events import AgentHeartbeat, InvalidEvent, parse_event

log = logging.getLogger(__name__)

T = TypeVar("T")

HEARTBEATS = Counter(
    "vidpipe_status_sink_heartbeats_total",
    "Agent heartbeats consumed, by outcome",
    ["outcome"],  # recorded | superseded (older than one already stored, or in the batch)
)
REDIS_RETRIES = Counter(
    "vidpipe_status_sink_redis_retries_total", "Batches retried because Redis failed"
)
CAMERAS = Gauge(
    "vidpipe_cameras",
    "Cameras per state across agents' last heartbeats (a lost agent's count as unknown)",
    ["state"],
)
AGENTS = Gauge("vidpipe_agents", "Agents heard from within the hour, by state", ["state"])


def newest_per_agent(beats: list[AgentHeartbeat]) -> list[AgentHeartbeat]:
    """Each agent's newest heartbeat of ``beats`` (by ``sent_ts_ns``), in first-seen order."""
    newest: dict[str, AgentHeartbeat] = {}
    for beat in beats:
        current = newest.get(beat.agent_id)
        if current is None or beat.sent_ts_ns >= current.sent_ts_ns:
            newest[beat.agent_id] = beat
    return list(newest.values())


class StatusSinkService:
    """Records heartbeats into the status store and keeps the state gauges current.

    ``stop``: the process's stop signal; while it is clear, Redis failures are retried
    forever (waits from 0.5 s doubling up to ``retry_max_s``).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        dead_letters: DeadLetterPublisher,
        stop: asyncio.Event,
        retry_max_s: float = 30.0,
        gauges_every_s: float = 5.0,
    ) -> None:
        self._redis = redis
        self._dead_letters = dead_letters
        self._stop = stop
        self._retry_max_s = retry_max_s
        self._gauges_every_s = gauges_every_s
        self._gauges_at = 0.0

    async def handle_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        beats: list[AgentHeartbeat] = []
        rejected: list[Rejected] = []
        for rec in records:
            try:
                beats.append(parse_event(AgentHeartbeat, rec.value or b""))
            except InvalidEvent as exc:
                rejected.append(Rejected(rec, str(exc), "invalid_event"))
        newest = newest_per_agent(beats)
        HEARTBEATS.labels("superseded").inc(len(beats) - len(newest))
        for beat in newest:
            stored = await self._retrying(partial(record_heartbeat, self._redis, beat))
            HEARTBEATS.labels("recorded" if stored else "superseded").inc()
        await self._retrying(self.update_gauges)
        await self._dead_letters.publish(rejected)

    async def on_idle(self) -> None:
        """Recompute the gauges at most every ``gauges_every_s`` (agents age into lost);
        a Redis failure here is logged and left for the next batch."""
        if time.monotonic() - self._gauges_at < self._gauges_every_s:
            return
        try:
            await self.update_gauges()
        except RedisError as exc:
            log.warning("state gauges not updated: %s", exc)

    async def update_gauges(self) -> None:
        """Set ``vidpipe_cameras{state}`` and ``vidpipe_agents{state}`` from the store.

        Raises:
            redis.exceptions.RedisError: Redis unreachable.
        """
        agents = await read_agents(self._redis)
        for state, count in camera_census(agents).items():
            CAMERAS.labels(state).set(count)
        for state, count in agent_census(agents).items():
            AGENTS.labels(state).set(count)
        self._gauges_at = time.monotonic()

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, retried with backoff while Redis fails and the process runs.

        Raises:
            redis.exceptions.RedisError: the stop signal came while Redis was failing.
        """
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RedisError),
            wait=wait_exponential(multiplier=0.5, max=self._retry_max_s),
            stop=lambda _state: self._stop.is_set(),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity returns or raises")


def _log_retry(state: RetryCallState) -> None:
    REDIS_RETRIES.inc()
    outcome = state.outcome
    log.warning(
        "Redis failed (%s); retry %d in %.1f s",
        outcome.exception() if outcome else "?",
        state.attempt_number,
        state.next_action.sleep if state.next_action else 0.0,
    )
