"""The one consumer runner: how every Kafka consumer service starts, consumes and stops.

A service provides a *wiring* coroutine that builds its unit of work from a
:class:`ConsumerContext` and returns the batch handler; the runner does the rest, the same
way for every service::

    logging (once) -> SIGTERM/SIGINT stop signal -> Prometheus /metrics -> producer start
    -> wiring (stores, models, background tasks) -> consumer start (group join)
    -> "<service> started" logged, gauge ``vidpipe_ready`` 1 -> poll / handle / commit
    until stopped -> consumer stop -> wiring clean-ups -> producer flush and stop

The handler runs under the failure policy of :mod:`vidpipe.retries` (transient errors
retried with the partitions paused while the consumer stays in its group; bad input and
errors that outlive their retries dead-lettered message by message), so a dependency
outage or a bad message never ends the process.

Clean-ups a wiring registers on ``context.exit_stack`` run after the consumer has left its
group and before the producer is flushed, so a final flush may still publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from vidpipe.bus import (
    BatchHandler,
    DeadLetterPublisher,
    IdleHandler,
    consume_batches,
    make_consumer,
    make_producer,
)
from vidpipe.logs import configure_logging
from vidpipe.retries import Interrupted, RetryingHandler, RetryPolicy
from vidpipe.runtime import READY, install_stop_signal, serve_metrics
from vidpipe.settings import ConsumerSettings, KafkaSettings, ServiceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerSpec:
    """Who consumes what: ``service`` names logs and dead letters; ``max_records`` is the
    largest batch handed to the handler, ``poll_timeout_ms`` the longest wait to fill it;
    ``max_poll_interval_ms`` how long one batch may take before the group evicts us;
    ``metrics_host:metrics_port`` serves ``/metrics``, ``/healthz`` and ``/readyz``."""

    service: str
    topics: tuple[str, ...]
    group_id: str
    max_records: int
    poll_timeout_ms: int
    metrics_port: int | None = None
    max_poll_interval_ms: int = 600_000
    metrics_host: str = "127.0.0.1"
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def of(cls, service: str, topics: tuple[str, ...], settings: ConsumerSettings) -> ConsumerSpec:
        """The spec a service's :class:`~vidpipe.settings.ConsumerSettings` describe."""
        return cls(
            service,
            topics,
            settings.group_id,
            settings.max_records,
            settings.poll_timeout_ms,
            settings.metrics_port,
            metrics_host=settings.metrics_host,
        )


@dataclass(frozen=True)
class ConsumerContext:
    """What a wiring gets: the shared producer, dead letters, the stop signal and an exit
    stack for its own clean-ups (run in reverse order of registration)."""

    producer: AIOKafkaProducer
    dead_letters: DeadLetterPublisher
    stop: asyncio.Event
    exit_stack: contextlib.AsyncExitStack


@dataclass(frozen=True)
class Wired:
    """A wiring's result: the batch handler, and optionally a coroutine run when a poll
    returns nothing (periodic work that must not race the handler)."""

    handle: BatchHandler
    on_idle: IdleHandler | None = None


Wiring = Callable[[ConsumerContext], Awaitable[Wired]]


async def consume(
    spec: ConsumerSpec,
    kafka: KafkaSettings,
    wiring: Wiring,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``spec`` until ``stop`` (default: SIGTERM or SIGINT) is set. The handler runs
    under :class:`~vidpipe.retries.RetryingHandler`; an exception it still raises (e.g. a
    dead letter that cannot be published) propagates after a clean shutdown, and nothing of
    the failed batch is committed."""
    stop = stop or install_stop_signal()
    serve_metrics(spec.metrics_port, spec.metrics_host)
    producer = make_producer(kafka)
    consumer = make_consumer(
        kafka,
        spec.group_id,
        *spec.topics,
        max_poll_records=spec.max_records,
        max_poll_interval_ms=spec.max_poll_interval_ms,
    )
    async with contextlib.AsyncExitStack() as stack:
        await producer.start()
        stack.push_async_callback(producer.stop)
        dead_letters = DeadLetterPublisher(producer, spec.service)
        context = ConsumerContext(producer, dead_letters, stop, stack)
        wired = await wiring(context)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        log.info("%s started", spec.service, extra={"group": spec.group_id, "topics": spec.topics})
        READY.labels(spec.service).set(1)
        handle = RetryingHandler(
            wired.handle, dead_letters, stop, spec.service, consumer, spec.retry
        )
        try:
            await consume_batches(
                consumer,
                handle,
                stop,
                max_records=spec.max_records,
                timeout_ms=spec.poll_timeout_ms,
                on_idle=wired.on_idle,
                service=spec.service,
            )
        except Interrupted:
            log.info("%s stopped during a retry; that batch is left uncommitted", spec.service)
        finally:
            READY.labels(spec.service).set(0)
            stop.set()
    log.info("%s stopped", spec.service)


def run_consumer(spec: ConsumerSpec, settings: ServiceSettings, wiring: Wiring) -> None:
    """Process entry point: configure logging once, then :func:`consume` until stopped."""
    configure_logging(settings.log_level)
    asyncio.run(consume(spec, settings.kafka, wiring))
