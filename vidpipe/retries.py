"""Every consumer's batch handler, made safe to fail: the policy of :mod:`vidpipe.failures`.

:class:`RetryingHandler` wraps a service's handler. When the handler raises:

- a transient error: the whole batch is retried with capped exponential backoff (tenacity,
  with jitter) for as long as the dependency is away. Meanwhile the consumer's partitions
  are paused and the consumer keeps polling (it gets nothing), so it keeps heartbeating and
  ``max.poll.interval`` never runs out: the group keeps the member and its partitions, and
  nothing is dead-lettered or committed.
- an unexpected error: retried up to ``RetryPolicy.unexpected_attempts`` times in all;
- bad input, or an unexpected error that outlived its attempts: the batch is handled again
  message by message, so only the message that fails is dead-lettered (once, with its
  reason or the exception) and the others are processed. Effects are keyed by message, so
  handling a message twice overwrites.

It returns once every message is either handled or dead-lettered, so the caller may commit.
When the stop signal is set during a backoff it raises :class:`Interrupted` instead: nothing
of the batch is committed and the next owner of the partitions replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import Counter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from vidpipe.bus import DeadLetterPublisher, Rejected
from vidpipe.failures import bad_input_of, classify

log = logging.getLogger(__name__)

RETRIES = Counter(
    "vidpipe_batch_retries_total",
    "Batch handler failures that were retried, by kind (transient, unexpected)",
    ["service", "kind"],
)

Handler = Callable[[list[ConsumerRecord[bytes, bytes]]], Awaitable[None]]


class Interrupted(Exception):
    """The stop signal was set while a batch waited for a retry; nothing was committed."""


class PausableConsumer(Protocol):
    """The part of :class:`aiokafka.AIOKafkaConsumer` the retries use."""

    def assignment(self) -> set[TopicPartition]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def paused(self) -> set[TopicPartition]: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = ..., max_records: int | None = ...
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff from ``initial_s`` doubling up to ``max_backoff_s`` (seconds, plus up to
    ``initial_s`` of jitter); an unexpected error is tried ``unexpected_attempts`` times in
    all."""

    initial_s: float = 0.5
    max_backoff_s: float = 15.0
    unexpected_attempts: int = 3


class RetryingHandler:
    """``handle`` with the failure policy of the module doc; call it like ``handle``."""

    def __init__(
        self,
        handle: Handler,
        dead_letters: DeadLetterPublisher,
        stop: asyncio.Event,
        service: str,
        consumer: PausableConsumer | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._handle = handle
        self._dead_letters = dead_letters
        self._stop = stop
        self._service = service
        self._consumer = consumer
        self._policy = policy or RetryPolicy()
        self._paused = False

    async def __call__(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        try:
            try:
                await self._retried(records)
            except Interrupted:
                raise
            except Exception as exc:
                if len(records) == 1:
                    await self._dead_letter(records[0], exc)
                    return
                log.warning(
                    "batch of %d failed (%s: %s); handling its messages one by one",
                    len(records), classify(exc), exc,
                    extra={"service": self._service},
                )  # fmt: skip
                for rec in records:
                    try:
                        await self._retried([rec])
                    except Interrupted:
                        raise
                    except Exception as one:
                        await self._dead_letter(rec, one)
        finally:
            self._resume()

    async def _retried(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """``handle(records)``, retried while the failure is transient and for at most
        ``unexpected_attempts`` unexpected ones; the last failure is raised."""
        unexpected = 0

        def worth_retrying(exc: BaseException) -> bool:
            nonlocal unexpected
            if not isinstance(exc, Exception) or isinstance(exc, Interrupted):
                return False  # cancellation and stop are not failures
            kind = classify(exc)
            if kind == "unexpected":
                unexpected += 1
                return unexpected < self._policy.unexpected_attempts
            return kind == "transient"

        retrying = AsyncRetrying(
            retry=retry_if_exception(worth_retrying),
            wait=wait_exponential_jitter(
                multiplier=self._policy.initial_s,
                max=self._policy.max_backoff_s,
                jitter=self._policy.initial_s,
            ),
            sleep=self._wait_polling,
            before_sleep=self._before_retry,
            reraise=True,
        )
        await retrying(self._handle, records)

    def _before_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        kind = classify(exc) if exc is not None else "unexpected"
        RETRIES.labels(self._service, kind).inc()
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "batch failed (%s, attempt %d), retrying in %.1f s: %r",
            kind, state.attempt_number, delay, exc,
            extra={"service": self._service, "kind": kind},
        )  # fmt: skip

    async def _wait_polling(self, seconds: float) -> None:
        """Wait ``seconds`` with the partitions paused, polling meanwhile so the consumer
        stays in its group. Raises :class:`Interrupted` once the stop signal is set."""
        deadline = time.monotonic() + seconds
        consumer = self._consumer
        if consumer is not None:
            consumer.pause(*consumer.assignment())
            self._paused = True
        while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
            step = min(left, 1.0)
            if consumer is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), step)
                continue
            polled = await consumer.getmany(timeout_ms=max(int(step * 1000), 1))
            for tp, got in polled.items():
                # a partition assigned by a rebalance meanwhile is not paused yet: give
                # back what it returned (read again later) and pause it
                if got:
                    consumer.seek(tp, got[0].offset)
                consumer.pause(tp)
        if self._stop.is_set():
            raise Interrupted("stopped while a batch waited for a retry")

    def _resume(self) -> None:
        """Resume what a backoff paused (partitions still assigned)."""
        if self._consumer is not None and self._paused:
            self._paused = False
            paused = self._consumer.paused()
            if paused:
                self._consumer.resume(*paused)

    async def _dead_letter(self, rec: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
        bad = bad_input_of(exc)
        if bad is not None:
            rejected = Rejected(rec, str(bad), bad.error_type)
        else:
            attempts = self._policy.unexpected_attempts
            reason = f"{type(exc).__name__}: {exc} (failed {attempts} times)"
            rejected = Rejected(rec, reason, "unexpected_error")
            log.error(
                "message failed %d times, dead-lettered",
                attempts,
                exc_info=exc,
                extra={"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
            )
        await self._dead_letters.publish([rejected])
