"""The failure policy every consumer runs under (vidpipe.failures, vidpipe.retries), with
in-memory fakes: transient errors are retried with the partitions paused while polling goes
on, bad input is dead-lettered once, unexpected errors a bounded number of times."""

from __future__ import annotations

import asyncio
from typing import Any

import botocore.exceptions
import pytest
import redis.exceptions
import sqlalchemy.exc
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from tests.unit.fakes import FakeProducer, record
from vidpipe import runner
from vidpipe.bus import DeadLetterPublisher
from vidpipe.events import DeadLetter
from vidpipe.failures import BadInput, TransientError, classify
from vidpipe.retries import Interrupted, RetryingHandler, RetryPolicy
from vidpipe.settings import KafkaSettings
from vidpipe.topics import FRAMES_DECODED

FAST = RetryPolicy(initial_s=0.01, max_backoff_s=0.02, unexpected_attempts=3)
TP = TopicPartition(FRAMES_DECODED, 0)


class PausingConsumer:
    """Records pauses, resumes and polls; a poll returns nothing (its partitions paused)."""

    def __init__(self) -> None:
        self.assigned = {TP}
        self.paused_now: set[TopicPartition] = set()
        self.polls_while_paused = 0
        self.resumed: list[TopicPartition] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused_now |= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_now)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused_now -= set(partitions)
        self.resumed += partitions

    def seek(self, partition: TopicPartition, offset: int) -> None:
        raise AssertionError("nothing was returned, nothing to give back")

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        if self.paused_now >= self.assigned:
            self.polls_while_paused += 1
        await asyncio.sleep(timeout_ms / 1000)
        return {}


class Flaky:
    """A handler failing with ``errors`` in turn, then succeeding; records what it saw."""

    def __init__(self, *errors: Exception, failing: set[int] | None = None) -> None:
        self.errors = list(errors)
        self.failing = failing or set()  # offsets that always fail with the first error
        self.calls: list[list[int]] = []
        self.done: list[int] = []

    async def __call__(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        offsets = [r.offset for r in records]
        self.calls.append(offsets)
        if self.failing & set(offsets):
            raise self.errors[0]
        if self.errors and not self.failing:
            raise self.errors.pop(0)
        self.done += offsets


def frames(n: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [record(FRAMES_DECODED, b"{}", offset=i) for i in range(n)]


def letters(producer: FakeProducer) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(v) for v in producer.on(FRAMES_DECODED + ".dlq")]


def make(
    handler: Flaky, producer: FakeProducer, consumer: PausingConsumer | None = None
) -> RetryingHandler:
    return RetryingHandler(
        handler,
        DeadLetterPublisher(producer, "detector"),
        asyncio.Event(),
        "detector",
        consumer,
        FAST,
    )


@pytest.mark.parametrize(
    "exc",
    [
        TransientError("registry away"),
        TimeoutError(),
        ConnectionRefusedError(),
        redis.exceptions.ConnectionError("refused"),
        redis.exceptions.TimeoutError("timed out"),
        sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed")),
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3"),
        KafkaConnectionError("broker away"),
    ],
)
def test_classify_when_dependency_unreachable_then_transient(exc: Exception) -> None:
    assert classify(exc) == "transient"


def test_classify_when_cause_is_transient_then_transient_but_bad_input_wins() -> None:
    try:
        try:
            raise ConnectionResetError()
        except ConnectionResetError as cause:
            raise RuntimeError("wrapped") from cause
    except RuntimeError as exc:
        assert classify(exc) == "transient"
    assert classify(BadInput("NaN score", "invalid_detections")) == "bad_input"
    assert classify(KeyError("bug")) == "unexpected"


async def test_retrying_when_transient_then_retried_paused_and_polling_never_dead_lettered() -> (
    None
):
    # given a handler failing with a dependency outage three times
    outage = redis.exceptions.ConnectionError("Connection refused")
    handler, producer, consumer = Flaky(outage, outage, outage), FakeProducer(), PausingConsumer()
    # when
    await make(handler, producer, consumer)(frames(3))
    # then the whole batch ran again until it passed, polled meanwhile, partitions resumed
    assert handler.calls == [[0, 1, 2]] * 4 and handler.done == [0, 1, 2]
    assert consumer.polls_while_paused >= 3
    assert consumer.paused_now == set() and TP in consumer.resumed
    assert letters(producer) == []


async def test_retrying_when_bad_input_then_only_that_message_dead_lettered_once() -> None:
    # given a batch whose message 1 is bad input
    handler = Flaky(BadInput("score is NaN", "invalid_detections"), failing={1})
    producer = FakeProducer()
    # when
    await make(handler, producer, PausingConsumer())(frames(3))
    # then the batch is not retried as such; each message alone; only 1 is dead-lettered
    assert handler.calls == [[0, 1, 2], [0], [1], [2]]
    assert handler.done == [0, 2]
    [letter] = letters(producer)
    assert (letter.offset, letter.error_type, letter.reason) == (
        1,
        "invalid_detections",
        "score is NaN",
    )


async def test_retrying_when_unexpected_error_persists_then_bounded_then_dead_lettered() -> None:
    # given message 0 always hits a bug
    handler, producer = Flaky(KeyError("bug"), failing={0}), FakeProducer()
    # when
    await make(handler, producer)(frames(2))
    # then the batch is tried 3 times, then each message 3 times; only 0 is dead-lettered
    assert handler.calls == [[0, 1]] * 3 + [[0]] * 3 + [[1]]
    [letter] = letters(producer)
    assert letter.offset == 0 and letter.error_type == "unexpected_error"
    assert "KeyError" in letter.reason and "3 times" in letter.reason


async def test_retrying_when_unexpected_error_passes_then_nothing_dead_lettered() -> None:
    handler, producer = Flaky(KeyError("once")), FakeProducer()
    await make(handler, producer)(frames(2))
    assert handler.calls == [[0, 1]] * 2 and letters(producer) == []


async def test_retrying_when_stopped_during_outage_then_interrupted_nothing_dead_lettered() -> None:
    # given a dependency that never comes back
    class Down:
        async def __call__(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
            raise TransientError("Postgres unreachable")

    producer, stop = FakeProducer(), asyncio.Event()
    handler = RetryingHandler(
        Down(), DeadLetterPublisher(producer, "detector"), stop, "detector", None, FAST
    )
    # when the stop signal comes meanwhile
    asyncio.get_running_loop().call_later(0.1, stop.set)
    # then the handler gives up without a dead letter (the caller commits nothing)
    with pytest.raises(Interrupted):
        await asyncio.wait_for(handler(frames(2)), 5)
    assert letters(producer) == []


class OnePollConsumer(PausingConsumer):
    """One poll with two frames, then nothing; records commits."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = [frames(2)]
        self.committed: list[dict[TopicPartition, int]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        if self.paused_now >= self.assigned or not self.polls:
            return await super().getmany(timeout_ms=min(timeout_ms, 10))
        return {TP: self.polls.pop(0)}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)


class StartableProducer(FakeProducer):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def test_consume_when_handler_meets_an_outage_then_retried_and_committed_not_exited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a consumer service whose handler first finds Redis unreachable (the old runner
    # let the error end the process)
    consumer, producer = OnePollConsumer(), StartableProducer()
    monkeypatch.setattr(runner, "make_producer", lambda kafka: producer)
    monkeypatch.setattr(runner, "make_consumer", lambda *args, **kw: consumer)
    stop = asyncio.Event()
    handled: list[list[int]] = []

    async def wiring(context: runner.ConsumerContext) -> runner.Wired:
        async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
            handled.append([r.offset for r in records])
            if len(handled) == 1:
                raise redis.exceptions.ConnectionError("Connection refused")
            stop.set()

        return runner.Wired(handle)

    spec = runner.ConsumerSpec("detector", (FRAMES_DECODED,), "detector", 10, 1, retry=FAST)
    # when
    await asyncio.wait_for(runner.consume(spec, KafkaSettings(), wiring, stop), timeout=5)
    # then the batch ran again, was committed, and nothing was dead-lettered
    assert handled == [[0, 1], [0, 1]]
    assert consumer.committed == [{TP: 2}]
    assert letters(producer) == []
