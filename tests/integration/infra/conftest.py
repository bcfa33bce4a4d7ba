"""Per-test Kafka topics for the infra tests: a fresh name, deleted afterwards."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from vidpipe.settings import ServiceSettings


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


@pytest.fixture
def fresh_topic(stack: None, stack_settings: ServiceSettings) -> Iterator[str]:
    """A topic name no other test uses (``it.<uuid>``); the test creates it."""
    topic = f"it.{uuid.uuid4().hex[:12]}"
    yield topic
    asyncio.run(_delete_topic(stack_settings.kafka.bootstrap_servers, topic))
