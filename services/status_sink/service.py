"""Why a sink: agents publish heartbeats to Kafka instead of writing Redis themselves, so
an agent needs no Redis credentials, a Redis outage never stalls a camera, and the store has
one writer (:mod:`vidpipe.agent_status`). The sink keeps, per batch, each agent's newest
heartbeat, records it, then recomputes the state gauges from the store; a poll that returns
nothing recomputes them too (every ``gauges_every_s``), so an agent that dies turns *lost*
on the gauges without a new message.

A heartbeat that does not validate is dead-lettered. A Redis outage is not the message's
fault: the handler raises Redis's connection or timeout error, which the runner's failure
policy (:mod:`vidpipe.retries`) retries with backoff while the consumer stays in its group,
for as long as Redis is away, and never dead-letters. Recording is idempotent, so a batch
retried after a partial write changes nothing twice.
"""

from __future__ import annotations

import logging
import time

from aiokafka import ConsumerRecord
from prometheus_client import Counter, Gauge
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from vidpipe.agent_status import (
    agent_census,
    camera_census,
    read_agents,
    record_heartbeat,
)
from vidpipe.bus import DeadLetterPublisher, Rejected
from vidpipe.events import AgentHeartbeat, InvalidEvent, parse_event

log = logging.getLogger(__name__)

HEARTBEATS = Counter(
    "vidpipe_status_sink_heartbeats_total",
    "Agent heartbeats consumed, by outcome",
    ["outcome"],  # recorded | superseded (older than one already stored, or in the batch)
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
    """Records heartbeats into the status store and keeps the state gauges current."""

    def __init__(
        self,
        redis: aioredis.Redis,
        dead_letters: DeadLetterPublisher,
        gauges_every_s: float = 5.0,
    ) -> None:
        self._redis = redis
        self._dead_letters = dead_letters
        self._gauges_every_s = gauges_every_s
        self._gauges_at = 0.0

    async def handle_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Record each agent's newest valid heartbeat, update the gauges, dead-letter the
        invalid ones.

        Raises:
            redis.exceptions.RedisError: Redis unreachable (the runner retries the batch).
        """
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
            stored = await record_heartbeat(self._redis, beat)
            HEARTBEATS.labels("recorded" if stored else "superseded").inc()
        await self.update_gauges()
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
