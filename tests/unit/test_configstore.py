"""The config read the detector uses (ConfigStore.read_client_config) with the blocking
lookup replaced: last known config through outages, timeouts, shared lookups."""

from __future__ import annotations

import asyncio
import threading
from typing import ClassVar

import pytest
import redis.exceptions

from vidpipe.configstore import ClientConfig, ConfigStore, ConfigUnavailable, InvalidConfig
from vidpipe.settings import PostgresSettings, RedisSettings

CONFIG = ClientConfig(client_id="acme", model_name="det")


class Scripted(ConfigStore):
    """Lookups answer ``answer`` (a config, or an exception to raise), or hang while
    ``frozen`` is clear."""

    def __init__(self) -> None:
        super().__init__(
            PostgresSettings(), RedisSettings(url="redis://127.0.0.1:1/0"), timeout_s=0.1,
            on_stale=self.stale.append,
        )  # fmt: skip
        self.answer: ClientConfig | Exception = CONFIG
        self.frozen = threading.Event()
        self.frozen.set()
        self.lookups = 0

    stale: ClassVar[list[str]] = []

    def get_client_config(self, client_id: str) -> ClientConfig | None:
        self.lookups += 1
        self.frozen.wait(5)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def store() -> Scripted:
    Scripted.stale = []
    return Scripted()


async def test_read_when_both_stores_fail_then_last_known_served_and_counted(
    store: Scripted,
) -> None:
    assert await store.read_client_config("acme") == CONFIG
    store.answer = redis.exceptions.ConnectionError("refused")
    assert await store.read_client_config("acme") == CONFIG
    assert store.stale == ["config"]


async def test_read_when_a_store_hangs_then_last_known_within_timeout(store: Scripted) -> None:
    assert await store.read_client_config("acme") == CONFIG
    store.frozen.clear()
    try:
        assert await asyncio.wait_for(store.read_client_config("acme"), 2) == CONFIG
        # and while it is away, the stale config serves without asking again
        lookups = store.lookups
        assert await store.read_client_config("acme") == CONFIG
        assert store.lookups == lookups
    finally:
        store.frozen.set()


async def test_read_when_unreachable_and_never_read_then_transient(store: Scripted) -> None:
    store.answer = redis.exceptions.ConnectionError("refused")
    with pytest.raises(ConfigUnavailable):
        await store.read_client_config("acme")


async def test_read_when_config_invalid_then_raised_not_served_stale(store: Scripted) -> None:
    assert await store.read_client_config("acme") == CONFIG
    store.answer = InvalidConfig("client 'acme': stored config invalid")
    with pytest.raises(InvalidConfig):
        await store.read_client_config("acme")


async def test_read_when_concurrent_for_one_client_then_one_lookup(store: Scripted) -> None:
    results = await asyncio.gather(*(store.read_client_config("acme") for _ in range(5)))
    assert results == [CONFIG] * 5 and store.lookups == 1


async def test_read_when_store_back_then_fresh_config_after_one_retry(store: Scripted) -> None:
    assert await store.read_client_config("acme") == CONFIG
    store.answer = redis.exceptions.ConnectionError("refused")
    assert await store.read_client_config("acme") == CONFIG  # stale
    changed = CONFIG.model_copy(update={"score_threshold": 0.9})
    store.answer = changed
    await asyncio.sleep(0.15)  # past the retry interval (timeout_s)
    assert await store.read_client_config("acme") == CONFIG  # retried in the background
    await asyncio.sleep(0.05)
    assert await store.read_client_config("acme") == changed
