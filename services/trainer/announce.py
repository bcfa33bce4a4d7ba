"""The Kafka side of training jobs: topic ``training.jobs.v1`` and its one event.

The event only says "job N is waiting in Postgres"; trainers also poll Postgres, so a lost
event delays a job by at most one poll.
"""

from __future__ import annotations

from typing import Literal

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import BaseModel, ConfigDict, Field

from vidpipe.bus import make_producer
from vidpipe.events import encode_event
from vidpipe.settings import KafkaSettings
from vidpipe.topics import TRAINING_JOBS

_TOPIC_ALREADY_EXISTS = 36


class TrainingJobQueued(BaseModel):
    """Topic ``training.jobs.v1``, key = job id: "job ``job_id`` is waiting in Postgres"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    job_id: int = Field(gt=0)


async def ensure_topic(settings: KafkaSettings, topic: str = TRAINING_JOBS) -> None:
    """Create ``topic`` (1 partition: jobs are few; one trainer takes each) if missing."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=10_000
    )
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, 1, replication_factor=1)])
        for name, code, message in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"creating topic {name} failed: error {code} {message}")
    finally:
        await admin.close()


async def announce(settings: KafkaSettings, job_id: int) -> None:
    """Publish :class:`TrainingJobQueued` (acks=all) after the row is committed."""
    await ensure_topic(settings)
    producer = make_producer(settings, linger_ms=0)
    await producer.start()
    try:
        event = TrainingJobQueued(job_id=job_id)
        await producer.send_and_wait(TRAINING_JOBS, encode_event(event), key=str(job_id).encode())
    finally:
        await producer.stop()
