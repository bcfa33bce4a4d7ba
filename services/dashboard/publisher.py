"""A long-lived Kafka producer for the dashboard's events (on-demand requests).

Routes run on whichever event loop or worker thread the server gives them, and an aiokafka
producer belongs to the loop it was started on; so the producer lives on an event loop of
its own, in a daemon thread started on first use, and callers hand it events from any
thread. Connecting once, instead of per request, keeps the broker's handshake off every
request's latency.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future

from aiokafka import AIOKafkaProducer

from vidpipe.bus import make_producer
from vidpipe.settings import KafkaSettings

log = logging.getLogger(__name__)


class PublishFailed(RuntimeError):
    """The broker did not acknowledge the event in time."""


class EventPublisher:
    """``publish(topic, value, key)`` from any thread, acknowledged (acks=all)."""

    def __init__(self, settings: KafkaSettings, timeout_s: float = 10.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._producer: AIOKafkaProducer | None = None

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="kafka-publisher", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _send(self, topic: str, value: bytes, key: bytes | None) -> None:
        if self._producer is None:
            producer = make_producer(self._settings, linger_ms=0)
            await producer.start()
            self._producer = producer
        await self._producer.send_and_wait(topic, value, key=key)

    def submit(self, topic: str, value: bytes, key: bytes | None = None) -> Future[None]:
        """Start sending; the future completes when the broker acknowledged."""
        return asyncio.run_coroutine_threadsafe(self._send(topic, value, key), self._started())

    def publish(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Send and wait for the acknowledgement (blocking: call from a worker thread).

        Raises:
            PublishFailed: no acknowledgement within the timeout, or the broker refused.
        """
        try:
            self.submit(topic, value, key).result(timeout=self._timeout_s)
        except Exception as exc:
            log.warning("event to %s not published: %s", topic, exc)
            raise PublishFailed(f"{topic}: {type(exc).__name__}") from exc

    async def apublish(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """:meth:`publish` for coroutines (does not block the caller's loop)."""
        try:
            await asyncio.wait_for(
                asyncio.wrap_future(self.submit(topic, value, key)), self._timeout_s
            )
        except Exception as exc:
            log.warning("event to %s not published: %s", topic, exc)
            raise PublishFailed(f"{topic}: {type(exc).__name__}") from exc

    def close(self) -> None:
        """Flush and stop the producer, then the loop."""
        with self._lock:
            loop, thread, self._loop = self._loop, self._thread, None
        if loop is None or thread is None:
            return
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                asyncio.run_coroutine_threadsafe(producer.stop(), loop).result(timeout=10)
            except Exception as exc:
                log.warning("Kafka producer did not stop cleanly: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
