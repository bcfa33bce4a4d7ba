"""The at-least-once core (vidpipe.bus) with in-memory fakes: what is committed, and when."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from pydantic import SecretStr

from tests.unit.fakes import FakeProducer, record
from vidpipe.bus import DeadLetterPublisher, Rejected, client_options, consume_batches
from vidpipe.settings import KafkaSettings
from vidpipe.topics import dead_letter_topic


class FakeConsumer:
    """Serves prepared polls, then empty ones; records every commit and what preceded it."""

    def __init__(self, polls: list[list[ConsumerRecord[bytes, bytes]]], log: list[str]) -> None:
        self._polls = polls
        self.log = log
        self.committed: list[dict[TopicPartition, int]] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        await asyncio.sleep(0)
        if not self._polls:
            return {}
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for rec in self._polls.pop(0):
            batch.setdefault(TopicPartition(rec.topic, rec.partition), []).append(rec)
        return batch

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append("commit")
        self.committed.append(offsets)


def _records(*offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [record("frames.decoded.v1", b'{"n": %d}' % o, offset=o) for o in offsets]


async def _run(consumer: FakeConsumer, handle: Any, stop: asyncio.Event, **kw: Any) -> None:
    await asyncio.wait_for(
        consume_batches(consumer, handle, stop, max_records=10, timeout_ms=1, **kw),
        timeout=5,
    )


async def test_consume_batches_when_handled_then_commits_after_the_effects() -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(0, 1, 2), _records(3)], log)
    stop = asyncio.Event()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        await asyncio.sleep(0)
        log.append(f"effects {[r.offset for r in records]}")
        if records[-1].offset == 3:
            stop.set()

    await _run(consumer, handle, stop)

    assert log == ["effects [0, 1, 2]", "commit", "effects [3]", "commit"]
    tp = TopicPartition("frames.decoded.v1", 0)
    assert consumer.committed == [{tp: 3}, {tp: 4}]  # the next offset to read


async def test_consume_batches_when_handler_raises_then_nothing_is_committed() -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(0, 1)], log)

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        raise RuntimeError("S3 exploded")

    with pytest.raises(RuntimeError, match="S3 exploded"):
        await _run(consumer, handle, asyncio.Event())
    assert consumer.committed == []


async def test_dead_letters_when_rejected_then_published_and_acked_before_the_commit() -> None:
    log: list[str] = []
    consumer = FakeConsumer([_records(7, 8)], log)
    producer = FakeProducer()
    dead_letters = DeadLetterPublisher(producer, "detector")
    stop = asyncio.Event()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        await dead_letters.publish([Rejected(records[1], "undecodable JPEG", "undecodable_image")])
        log.append(f"dead letters {len(producer.on(dead_letter_topic('frames.decoded.v1')))}")
        stop.set()

    await _run(consumer, handle, stop)

    assert log == ["dead letters 1", "commit"]
    letter = json.loads(producer.on("frames.decoded.v1.dlq")[0])
    assert (letter["offset"], letter["reason"], letter["error_type"]) == (
        8,
        "undecodable JPEG",
        "undecodable_image",
    )
    assert letter["payload"] == '{"n": 8}'


async def test_consume_batches_when_poll_is_empty_then_calls_on_idle() -> None:
    log: list[str] = []
    consumer = FakeConsumer([], log)
    stop = asyncio.Event()

    async def idle() -> None:
        log.append("idle")
        if len(log) == 3:
            stop.set()

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        raise AssertionError("no records were polled")

    await _run(consumer, handle, stop, on_idle=idle)
    assert log == ["idle", "idle", "idle"]


def test_client_options_when_sasl_configured_then_scram_credentials_passed() -> None:
    plain = client_options(KafkaSettings())
    assert plain == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    scram = client_options(
        KafkaSettings(
            bootstrap_servers="kafka:9092",
            security_protocol="SASL_PLAINTEXT",
            sasl_username="detector",
            sasl_password=SecretStr("s3cret"),
        )
    )
    assert scram["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (scram["sasl_plain_username"], scram["sasl_plain_password"]) == ("detector", "s3cret")
    assert "ssl_context" in client_options(KafkaSettings(security_protocol="SASL_SSL"))
