from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from tests.unit.fakes import FakeProducer, record
from vidpipe import runner
from vidpipe.bus import DEAD_LETTERS
from vidpipe.runner import ConsumerContext, ConsumerSpec, Wired
from vidpipe.runtime import READY, is_ready, serve_metrics
from vidpipe.settings import KafkaSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def not_ready() -> Iterator[None]:
    """No service of this test process is ready before or after the test."""
    READY.clear()
    yield
    READY.clear()


def test_serve_metrics_when_port_free_then_exposes_vidpipe_counters() -> None:
    port = free_port()
    DEAD_LETTERS.labels("test", "frames.decoded.v1", "invalid_event").inc()
    assert serve_metrics(port)
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert 'vidpipe_dead_letters_total{error_type="invalid_event",service="test"' in body


def test_serve_metrics_when_port_taken_then_service_goes_on() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert serve_metrics(sock.getsockname()[1]) is False
    assert serve_metrics(None) is False


def test_probes_when_no_service_ready_then_live_but_not_ready(not_ready: None) -> None:
    port = free_port()
    READY.labels("detector").set(0)
    assert serve_metrics(port)

    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    assert get(f"http://127.0.0.1:{port}/readyz")[0] == 503


def test_probes_when_a_service_is_ready_then_ready(not_ready: None) -> None:
    port = free_port()
    assert serve_metrics(port)
    READY.labels("detector").set(1)

    assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    READY.labels("detector").set(0)
    assert get(f"http://127.0.0.1:{port}/readyz")[0] == 503


def test_serve_metrics_when_host_given_then_binds_it() -> None:
    port = free_port()
    assert serve_metrics(port, "0.0.0.0")
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


class _FakeConsumer:
    """One poll with one record, then empty polls."""

    def __init__(self) -> None:
        self._polls = [[record("frames.decoded.v1", b"{}")]]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        await asyncio.sleep(0)
        if not self._polls:
            return {}
        return {TopicPartition("frames.decoded.v1", 0): self._polls.pop(0)}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("frames.decoded.v1", 0)}

    def paused(self) -> set[TopicPartition]:
        return set()

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...


class _StartableProducer(FakeProducer):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def test_consume_when_consuming_then_ready_until_stopped(
    monkeypatch: pytest.MonkeyPatch, not_ready: None
) -> None:
    monkeypatch.setattr(runner, "make_producer", lambda kafka: _StartableProducer())
    monkeypatch.setattr(runner, "make_consumer", lambda *args, **kw: _FakeConsumer())
    stop = asyncio.Event()
    seen: list[bool] = []

    async def wiring(context: ConsumerContext) -> Wired:
        seen.append(is_ready())  # wiring (model loads) happens before the group join

        async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
            seen.append(is_ready())
            stop.set()

        return Wired(handle)

    spec = ConsumerSpec("detector", ("frames.decoded.v1",), "detector", 10, 1)
    await asyncio.wait_for(runner.consume(spec, KafkaSettings(), wiring, stop), timeout=5)

    assert seen == [False, True]
    assert not is_ready()


def test_malloc_arena_cap_applies_on_glibc() -> None:
    """On glibc (these machines and the images) mallopt accepts the cap; elsewhere it is a
    no-op that says so."""
    import platform

    from vidpipe.runtime import limit_malloc_arenas

    applied = limit_malloc_arenas(2)
    assert applied is (platform.libc_ver()[0] == "glibc")
