"""The client-config cache against the real Redis and Postgres: no stale entry after a write
that races a read, an unparsable entry is a miss, a reset connection is replaced."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import event

from tests.integration.detector.conftest import Proxies
from vidpipe.configstore import ClientConfig, ConfigStore
from vidpipe.settings import PostgresSettings, ServiceSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def client(settings: ServiceSettings) -> Iterator[str]:
    client_id = f"it-{uuid.uuid4().hex[:8]}"
    store = ConfigStore(settings.postgres, settings.redis)
    store.put_client(client_id, client_id)
    store.put_client_config(ClientConfig(client_id=client_id, model_name="m", score_threshold=0.3))
    yield client_id
    store.delete_client(client_id)
    store.close()


def test_config_cache_when_write_lands_while_a_read_is_in_flight_then_no_stale_entry(
    settings: ServiceSettings, client: str
) -> None:
    # given a reader that has read the row (threshold 0.3) but not yet filled the cache
    reader = ConfigStore(settings.postgres, settings.redis)
    writer = ConfigStore(settings.postgres, settings.redis)
    row_read, written = threading.Event(), threading.Event()

    @event.listens_for(reader.engine, "after_cursor_execute")
    def hold(*args: Any) -> None:
        if "client_configs" in str(args[2]) and not written.is_set():
            row_read.set()
            written.wait(10)

    answers: list[ClientConfig | None] = []
    thread = threading.Thread(target=lambda: answers.append(reader.get_client_config(client)))
    thread.start()
    assert row_read.wait(10)
    # when a writer commits threshold 0.9 (and invalidates) meanwhile, then the read ends
    writer.put_client_config(ClientConfig(client_id=client, model_name="m", score_threshold=0.9))
    written.set()
    thread.join(10)
    # then the reader answered what it read, but did not write it back over the new config
    assert answers and answers[0] is not None and answers[0].score_threshold == 0.3
    fresh = ConfigStore(settings.postgres, settings.redis)
    try:
        config = fresh.get_client_config(client)
        assert config is not None and config.score_threshold == 0.9
    finally:
        for store in (reader, writer, fresh):
            store.close()


def test_config_cache_when_entry_unparsable_then_read_from_postgres_and_replaced(
    settings: ServiceSettings, client: str
) -> None:
    with redis.Redis.from_url(settings.redis.url) as cache:
        cache.set(f"vidpipe:client-config:{client}", b'{"client_id": "x", "score_thr')
    store = ConfigStore(settings.postgres, settings.redis)
    try:
        config = store.get_client_config(client)
        assert config is not None and config.score_threshold == 0.3
        with redis.Redis.from_url(settings.redis.url) as cache:
            entry = cache.get(f"vidpipe:client-config:{client}")
        assert entry is not None and ClientConfig.model_validate_json(entry) == config
    finally:
        store.close()


def test_config_store_when_postgres_connections_reset_then_next_read_reconnects(
    settings: ServiceSettings, proxies: Proxies, client: str
) -> None:
    # given a store whose pooled Postgres connection goes through the proxy
    store = ConfigStore(
        PostgresSettings(dsn=SecretStr(proxies.dsn)),
        settings.redis.model_copy(update={"url": "redis://127.0.0.1:1/0"}),  # Postgres only
        timeout_s=1.0,
    )
    try:
        assert store.get_client_config(client) is not None
        # when every connection is reset (a restart) and Postgres answers again
        proxies.postgres.cut()
        proxies.postgres.restore()
        # then the next read opens a new connection instead of failing on the dead one
        assert store.get_client_config(client) is not None
    finally:
        proxies.postgres.restore()
        store.close()
