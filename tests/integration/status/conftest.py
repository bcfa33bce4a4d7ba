"""Fixtures for the status sink and store against the real broker and Redis: heartbeats,
a fresh topic per test, the sink consuming it in this process, and a clean status store in
the Redis database of the environment (``VIDPIPE_REDIS__URL``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis import Redis

from services.status_sink.__main__ import wiring
from services.status_sink.settings import StatusSinkSettings
from vidpipe.bus import ensure_topics, make_producer
from vidpipe.events import AgentHeartbeat, CameraStatus, encode_event
from vidpipe.runner import ConsumerSpec, consume
from vidpipe.settings import KafkaSettings, ServiceSettings
from vidpipe.topics import TopicSpec, dead_letter_topic

NS = 1_000_000_000


def camera_status(client_id: str, camera_id: str, **fields: Any) -> CameraStatus:
    """A streaming camera whose last frame was captured just now (unless ``fields`` say)."""
    values: dict[str, Any] = {
        "state": "streaming",
        "session_id": "20261201t133012-9c1e",
        "input_fps": 5.0,
        "output_fps": 5.0,
        "last_capture_ts_ns": time.time_ns(),
    }
    return CameraStatus(client_id=client_id, camera_id=camera_id, **(values | fields))


def heartbeat(
    agent_id: str, *cameras: CameraStatus, age_s: float = 0.0, **fields: Any
) -> AgentHeartbeat:
    """``agent_id``'s heartbeat sent ``age_s`` seconds ago (host ``<agent_id>.host``)."""
    sent = time.time_ns() - int(age_s * NS)
    values: dict[str, Any] = {
        "host": f"{agent_id}.host",
        "version": "test",
        "capacity": 4,
        "started_ts_ns": sent - 60 * NS,
        "sent_ts_ns": sent,
        "partitions": (0, 1),
        "cameras": cameras,
    }
    return AgentHeartbeat(agent_id=agent_id, **(values | fields))


async def publish(kafka: KafkaSettings, topic: str, *messages: AgentHeartbeat | bytes) -> None:
    """Send each message (an event, or raw bytes keyed ``bad``) and wait for the acks."""
    producer = make_producer(kafka, linger_ms=0)
    await producer.start()
    try:
        for message in messages:
            if isinstance(message, bytes):
                await producer.send_and_wait(topic, message, key=b"bad")
            else:
                value, key = encode_event(message), message.agent_id.encode()
                await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def clear_status(redis: Redis) -> None:
    """Remove every agent and camera status from this test run's Redis database."""
    for pattern in ("vidpipe:agent*", "vidpipe:camera-status:*"):
        keys = list(redis.scan_iter(match=pattern))
        if keys:
            redis.delete(*keys)


@pytest.fixture
def redis(stack: None, stack_settings: ServiceSettings) -> Iterator[Redis]:
    """The environment's Redis database, with no agent or camera status in it."""
    client = Redis.from_url(stack_settings.redis.url)
    clear_status(client)
    yield client
    clear_status(client)
    client.close()


@pytest.fixture
async def topic(stack: None, stack_settings: ServiceSettings) -> str:
    """A fresh heartbeat topic (and its dead-letter topic) of one partition."""
    name = f"test.agents.{uuid.uuid4().hex[:10]}"
    await ensure_topics(
        stack_settings.kafka, [TopicSpec(name, 1), TopicSpec(dead_letter_topic(name), 1)]
    )
    return name


@contextlib.asynccontextmanager
async def running_sink(settings: StatusSinkSettings, topic: str) -> AsyncIterator[None]:
    """The status sink consuming ``topic`` in this process until the block ends."""
    stop = asyncio.Event()
    spec = ConsumerSpec.of("status-sink", (topic,), settings)
    task = asyncio.create_task(consume(spec, settings.kafka, wiring(settings), stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def sink_settings(**overrides: Any) -> StatusSinkSettings:
    """The sink's settings from the environment, in a group of its own, without a metrics
    port, with quick gauges."""
    values: dict[str, Any] = {
        "group_id": f"status-sink-test-{uuid.uuid4().hex[:8]}",
        "metrics_port": None,
        "gauges_every_s": 0.5,
    }
    return StatusSinkSettings(**(values | overrides))


async def eventually(check: Any, timeout_s: float = 20.0, what: str = "") -> None:
    """Await until ``check()`` is true (polled every 0.2 s); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what or check}")
        await asyncio.sleep(0.2)
