"""The status sink against the real broker and Redis: heartbeats published on a fresh topic
land in the status store, bad ones in the dead-letter topic, agents turn lost, cameras an
agent stops reporting disappear, the gauges count them, and a Redis outage only delays."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from prometheus_client import REGISTRY
from redis import Redis

from tests.integration.pipeline.conftest import read_keyed
from tests.integration.status.conftest import (
    camera_status,
    eventually,
    heartbeat,
    publish,
    running_sink,
    sink_settings,
)
from vidpipe.agent_status import camera_status as stored_status
from vidpipe.agent_status import camera_statuses, list_agents
from vidpipe.events import AgentHeartbeat
from vidpipe.settings import RedisSettings, ServiceSettings
from vidpipe.topics import dead_letter_topic

pytestmark = pytest.mark.integration


def gauge(name: str, state: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"state": state})


async def test_sink_when_heartbeats_published_then_store_gauges_and_dead_letters(
    redis: Redis, topic: str, stack_settings: ServiceSettings
) -> None:
    client = f"st-{uuid.uuid4().hex[:8]}"
    a, b = f"agent-a-{client}", f"agent-b-{client}"
    # given agent A streaming two cameras, agent B silent for 30 s with a third, and garbage
    beats: list[AgentHeartbeat | bytes] = [
        heartbeat(a, camera_status(client, "c1"), camera_status(client, "c2")),
        heartbeat(b, camera_status(client, "c3"), age_s=30),
        b'{"agent_id": "x", "host": ""}',
    ]
    settings = sink_settings()
    async with running_sink(settings, topic):
        # when they are published on the sink's topic
        await publish(stack_settings.kafka, topic, *beats)
        # then the store has each camera as its agent reported it, B's as unknown (lost)
        await eventually(lambda: len(camera_statuses(redis, client)) == 3, what="3 cameras")
        views = camera_statuses(redis, client)
        assert {k: (v.agent_id, v.host, v.state()) for k, v in views.items()} == {
            "c1": (a, f"{a}.host", "streaming"),
            "c2": (a, f"{a}.host", "streaming"),
            "c3": (b, f"{b}.host", "unknown"),
        }
        assert views["c1"].live() and not views["c3"].live()
        agents = {v.heartbeat.agent_id: v.state for v in list_agents(redis)}
        assert agents == {a: "live", b: "lost"}
        # and the gauges count cameras per state and agents per state
        await eventually(lambda: gauge("vidpipe_cameras", "streaming") == 2, what="gauge")
        assert gauge("vidpipe_cameras", "unknown") == 1
        assert gauge("vidpipe_agents", "live") == 1 and gauge("vidpipe_agents", "lost") == 1

        # when A stops reporting c2, then c2's entry goes
        newer = heartbeat(a, camera_status(client, "c1", reconnects=2), age_s=-1)
        await publish(stack_settings.kafka, topic, newer)
        await eventually(lambda: stored_status(redis, client, "c2") is None, what="c2 dropped")
        c1 = stored_status(redis, client, "c1")
        assert c1 is not None and c1.status.reconnects == 2
        await eventually(lambda: gauge("vidpipe_cameras", "streaming") == 1, what="gauge")
        # and an older heartbeat of A (a replay) changes nothing
        replay = heartbeat(a, camera_status(client, "c1"), camera_status(client, "c2"), age_s=8)
        sentinel = heartbeat(f"agent-s-{client}", camera_status(client, "c9"))
        await publish(stack_settings.kafka, topic, replay, sentinel)
        await eventually(lambda: stored_status(redis, client, "c9") is not None, what="c9")
        assert stored_status(redis, client, "c2") is None
        c1 = stored_status(redis, client, "c1")
        assert c1 is not None and c1.status.reconnects == 2

        # when A stops cleanly, then its cameras go and it shows as stopped
        stopping = heartbeat(a, camera_status(client, "c1", state="stopped"), stopping=True)
        await publish(stack_settings.kafka, topic, stopping.model_copy(update={
            "sent_ts_ns": stopping.sent_ts_ns + 2_000_000_000}))  # fmt: skip
        await eventually(lambda: set(camera_statuses(redis, client)) == {"c3", "c9"}, what="stop")
        agents = {v.heartbeat.agent_id: v.state for v in list_agents(redis)}
        assert agents == {a: "stopped", b: "lost", f"agent-s-{client}": "live"}
        await eventually(lambda: gauge("vidpipe_agents", "stopped") == 1, what="gauge")
    # and the invalid heartbeat is in the dead-letter topic, with its reason
    letters = await read_keyed(stack_settings, dead_letter_topic(topic), b"bad")
    assert len(letters) == 1
    letter = json.loads(letters[0])
    assert letter["service"] == "status-sink" and letter["error_type"] == "invalid_event"
    assert "invalid AgentHeartbeat" in letter["reason"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def test_sink_when_redis_down_then_retried_until_it_answers_never_dead_lettered(
    redis: Redis, topic: str, stack_settings: ServiceSettings
) -> None:
    # given a sink whose Redis is a port nothing listens on yet (a proxy to the real one later)
    real = redis.connection_pool.connection_kwargs
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    url = f"redis://127.0.0.1:{port}/{real.get('db', 0)}"
    client = f"st-{uuid.uuid4().hex[:8]}"
    settings = sink_settings(redis=RedisSettings(url=url))
    async with running_sink(settings, topic):
        # when a heartbeat arrives while Redis is unreachable
        await publish(
            stack_settings.kafka, topic, heartbeat(f"agent-{client}", camera_status(client, "c1"))
        )
        await asyncio.sleep(4)
        assert camera_statuses(redis, client) == {}

        # then once Redis answers again, the heartbeat is recorded
        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(real["host"], real["port"])
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        proxy = await asyncio.start_server(forward, "127.0.0.1", port)
        try:
            await eventually(lambda: "c1" in camera_statuses(redis, client), what="recorded")
        finally:
            proxy.close()
    # and nothing was dead-lettered
    assert (
        await read_keyed(stack_settings, dead_letter_topic(topic), f"agent-{client}".encode()) == []
    )
