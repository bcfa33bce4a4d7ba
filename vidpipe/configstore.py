"""Clients and their detection config: PostgreSQL is the truth, Redis a cache.

Reads go Redis first (``vidpipe:client-config:<client_id>``, JSON, TTL as a safety net),
then Postgres, then fill the cache. Every write through :class:`ConfigStore` updates
Postgres and then invalidates the cache entry, so the detector sees a change on its next
batch without restarting. Unknown clients are cached as a short-lived negative entry so a
flood of frames from an unregistered client does not hammer Postgres.

The cache cannot go stale by a race: an invalidation bumps the client's generation
(``vidpipe:client-config-gen:<client_id>``) and deletes the entry in one transaction, and a
reader fills the cache only if the generation is still the one it saw before reading
Postgres (a Lua compare-and-set). Without that, a reader that read the old row, then lost
the CPU while a writer committed and deleted the key, would write the old row back for the
whole TTL.

Serving through outages (:meth:`ConfigStore.read_client_config`, the detector's read): Redis
unreachable -> Postgres; Postgres unreachable too -> the config this process last read
(stale, counted through ``on_stale`` and logged). Each step has a timeout and runs in a small
thread pool of its own, so a frozen dependency neither blocks the event loop nor ties up
the default executor. A cached value that does not parse is a cache miss (Postgres is the
truth); a Postgres row that does not validate is bad input (:class:`InvalidConfig`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis
import sqlalchemy as sa
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.dialects.postgresql import insert as pg_insert

from vidpipe.db import client_configs, clients, create_engine
from vidpipe.failures import BadInput, TransientError, classify
from vidpipe.modelref import ModelSelector
from vidpipe.settings import PostgresSettings, RedisSettings

log = logging.getLogger(__name__)

_CACHE_PREFIX = "vidpipe:client-config:"
_GENERATION_PREFIX = "vidpipe:client-config-gen:"
_MISSING = "__missing__"

#: KEYS[1] the cache entry, KEYS[2] the client's generation; ARGV[1] value, ARGV[2] TTL (s),
#: ARGV[3] the generation seen before Postgres was read. Fills only if it is unchanged.
_FILL = """
local generation = redis.call('GET', KEYS[2]) or '0'
if generation ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""

CACHE_PROBLEMS = Counter(
    "vidpipe_config_cache_problems_total",
    "Client-config cache reads that fell through to Postgres (unreachable, unparsable)",
    ["problem"],
)


class ConfigUnavailable(TransientError):
    """Neither Redis nor Postgres answered, and this process has no earlier config of the
    client to serve."""


class InvalidConfig(BadInput):
    """The client's stored config does not validate (frames of that client cannot be
    handled until it is fixed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "invalid_config")


class ClientConfig(BaseModel):
    """What the detector does with one client's frames.

    Exactly one of ``model_alias`` / ``model_version`` is set. ``classes_of_interest`` empty
    means every label the model knows. ``score_threshold`` is in [0, 1]. A frame older than
    ``max_frame_age_ms`` (from capture) when the detector would run it is dropped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    client_id: str
    model_name: str = Field(min_length=1)
    model_alias: str | None = "production"
    model_version: str | None = None
    score_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    classes_of_interest: tuple[str, ...] = ()
    max_frame_age_ms: int | None = Field(
        default=None, ge=1, description="frame-age budget; None: the detector's default"
    )

    @model_validator(mode="after")
    def _one_model_selector(self) -> ClientConfig:
        if (self.model_alias is None) == (self.model_version is None):
            raise ValueError("set exactly one of model_alias or model_version")
        self.model  # noqa: B018 - the reference follows vidpipe.modelref's rules
        return self

    @property
    def model(self) -> ModelSelector:
        """The registry reference the config selects."""
        return ModelSelector(
            name=self.model_name, alias=self.model_alias, version=self.model_version
        )

    @property
    def model_uri(self) -> str:
        """MLflow registry URI: ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""
        return self.model.uri


_CONFIG_COLUMNS = [c for c in client_configs.c if c.name != "updated_at"]


class ConfigStore:
    """Postgres + Redis access to clients and client configs (blocking calls, plus the
    async :meth:`read_client_config`).

    ``timeout_s`` bounds each Redis call and each config read from Postgres (seconds);
    ``on_stale`` is called with ``"config"`` whenever a config is served from memory because
    Redis and Postgres failed."""

    def __init__(
        self,
        postgres: PostgresSettings,
        redis_settings: RedisSettings,
        cache_ttl_s: int = 300,
        negative_ttl_s: int = 5,
        timeout_s: float = 5.0,
        on_stale: Callable[[str], None] | None = None,
    ) -> None:
        self._engine = create_engine(postgres, pool_size=2)
        self._redis = redis.Redis.from_url(
            redis_settings.url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # one retry (a pooled connection dead after a Redis restart), not redis-py's
            # default three with backoff: a frozen Redis would hold a read 4x the timeout
            retry=Retry(NoBackoff(), 1),
        )
        self._fill = self._redis.register_script(_FILL)
        self._ttl = cache_ttl_s
        self._negative_ttl = negative_ttl_s
        self._timeout_s = timeout_s
        self._on_stale = on_stale
        #: client -> its config as last read (None: known to have none)
        self._last_known: dict[str, ClientConfig | None] = {}
        self._reads: dict[str, asyncio.Future[ClientConfig | None]] = {}
        #: clients whose last read failed (served stale), and when to try again (monotonic)
        self._failing: set[str] = set()
        self._failed_until: dict[str, float] = {}
        self._lookups: dict[str, asyncio.Future[ClientConfig | None]] = {}
        self._executor: ThreadPoolExecutor | None = None

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._engine.dispose()
        self._redis.close()

    # ---- client configs -------------------------------------------------------------
    def get_client_config(self, client_id: str) -> ClientConfig | None:
        """The client's config, or ``None`` if the client has none (unknown client).

        Redis first; Redis unreachable or its value unparsable: Postgres (logged, counted).

        Raises:
            InvalidConfig: the Postgres row does not validate.
            sqlalchemy.exc.OperationalError: Postgres unreachable.
        """
        try:
            cached = self._redis.get(_CACHE_PREFIX + client_id)
            generation = self._redis.get(_GENERATION_PREFIX + client_id)
        except redis.RedisError as exc:
            CACHE_PROBLEMS.labels("unreachable").inc()
            log.warning("config cache unreachable, reading Postgres: %s", exc)
            return self._from_postgres(client_id, generation=None)
        if cached is not None:
            text = cached.decode() if isinstance(cached, bytes) else str(cached)
            if text == _MISSING:
                return None
            try:
                return ClientConfig.model_validate_json(text)
            except ValidationError as exc:
                # unparsable, or written by a version with other fields (e.g. before
                # sampling_fps was dropped): Postgres is the truth, read it again
                CACHE_PROBLEMS.labels("unparsable").inc()
                log.warning(
                    "cached config unparsable, reading Postgres: %s",
                    exc,
                    extra={"client_id": client_id},
                )
        seen = generation.decode() if isinstance(generation, bytes) else "0"
        return self._from_postgres(client_id, generation=seen)

    def _from_postgres(self, client_id: str, generation: str | None) -> ClientConfig | None:
        """The row from Postgres; the cache is filled only if ``generation`` (read before
        the row) is still current, and not at all when it is None (Redis unreachable)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(*_CONFIG_COLUMNS).where(client_configs.c.client_id == client_id)
            ).one_or_none()
        config: ClientConfig | None = None
        if row is not None:
            values = dict(row._mapping)
            values["classes_of_interest"] = tuple(values["classes_of_interest"] or ())
            try:
                config = ClientConfig.model_validate(values)
            except ValidationError as exc:
                raise InvalidConfig(f"client {client_id!r}: stored config invalid: {exc}") from exc
        if generation is not None:
            value, ttl = (
                (config.model_dump_json(), self._ttl)
                if config is not None
                else (_MISSING, self._negative_ttl)
            )
            keys = [_CACHE_PREFIX + client_id, _GENERATION_PREFIX + client_id]
            try:
                self._fill(keys=keys, args=[value, ttl, generation])
            except redis.RedisError as exc:
                CACHE_PROBLEMS.labels("unreachable").inc()
                log.warning("config cache not filled: %s", exc, extra={"client_id": client_id})
        return config

    async def read_client_config(self, client_id: str) -> ClientConfig | None:
        """:meth:`get_client_config` off the event loop, bounded by ``timeout_s`` per
        dependency; when Redis and Postgres both fail, the config last read (stale: counted
        through ``on_stale("config")``, logged when it starts). While they are failing, the
        last known config answers at once and a lookup is retried in the background at most
        every ``timeout_s``, so an outage costs a batch at most one timeout. Concurrent reads
        of one client share one lookup.

        Raises:
            ConfigUnavailable: both failed and this process never read the client's config.
            InvalidConfig: the stored config does not validate.
        """
        if client_id in self._failing and client_id in self._last_known:
            retry_due = time.monotonic() >= self._failed_until.get(client_id, 0.0)
            if client_id not in self._reads and retry_due:
                self._start_read(client_id)  # its outcome serves the next reads
            return self._stale(client_id)
        return await asyncio.shield(self._start_read(client_id))

    def _start_read(self, client_id: str) -> asyncio.Future[ClientConfig | None]:
        """The read of ``client_id`` in flight, started if there is none."""
        pending = self._reads.get(client_id)
        if pending is None:
            pending = asyncio.ensure_future(self._read(client_id))
            self._reads[client_id] = pending

            def done(task: asyncio.Future[ClientConfig | None]) -> None:
                self._reads.pop(client_id, None)
                if not task.cancelled():
                    task.exception()  # retrieved: a background read's failure is logged

            pending.add_done_callback(done)
        return pending

    async def _read(self, client_id: str) -> ClientConfig | None:
        if self._executor is None:
            # its own threads: a frozen dependency must not tie up the default executor
            self._executor = ThreadPoolExecutor(2, thread_name_prefix="configstore")
        lookup = self._lookups.get(client_id)
        if lookup is None or lookup.done():
            # one blocking lookup per client at a time: a hung one is waited for again
            # rather than piling new ones up behind it
            loop = asyncio.get_running_loop()
            lookup = loop.run_in_executor(self._executor, self.get_client_config, client_id)
            lookup.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._lookups[client_id] = lookup
        # Redis, then Postgres: each may take up to the timeout
        deadline = 2 * self._timeout_s + 1
        try:
            config = await asyncio.wait_for(asyncio.shield(lookup), deadline)
        except Exception as exc:
            if classify(exc) != "transient":
                self._failing.discard(client_id)
                raise
            self._failed_until[client_id] = time.monotonic() + self._timeout_s
            if client_id not in self._last_known:
                raise ConfigUnavailable(
                    f"client {client_id!r}: config unreachable and never read: {exc!r}"
                ) from exc
            if client_id not in self._failing:
                self._failing.add(client_id)
                log.warning(
                    "config store unreachable, serving the last known config: %r",
                    exc,
                    extra={"client_id": client_id},
                )
            return self._stale(client_id)
        if client_id in self._failing:
            self._failing.discard(client_id)
            log.info("config store reachable again", extra={"client_id": client_id})
        self._last_known[client_id] = config
        return config

    def _stale(self, client_id: str) -> ClientConfig | None:
        """The last known config of ``client_id``, counted as stale."""
        if self._on_stale is not None:
            self._on_stale("config")
        return self._last_known[client_id]

    def put_client_config(self, config: ClientConfig) -> None:
        """Upsert the config in Postgres, then invalidate the cache entry."""
        values = config.model_dump() | {"classes_of_interest": list(config.classes_of_interest)}
        insert = pg_insert(client_configs).values(**values, updated_at=sa.func.now())
        with self._engine.begin() as conn:
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[client_configs.c.client_id],
                    set_={
                        **{k: insert.excluded[k] for k in values if k != "client_id"},
                        "updated_at": sa.func.now(),
                    },
                )
            )
        self.invalidate(config.client_id)

    def invalidate(self, client_id: str) -> None:
        """Bump the client's cache generation and delete its entry (atomically), so no
        reader that read Postgres before can write an older config back."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(_GENERATION_PREFIX + client_id)
            pipe.delete(_CACHE_PREFIX + client_id)
            pipe.execute()
        log.info("client config cache invalidated", extra={"client_id": client_id})

    # ---- clients --------------------------------------------------------------------
    def put_client(self, client_id: str, name: str) -> None:
        """Create the client, or rename it if it exists."""
        insert = pg_insert(clients).values(client_id=client_id, name=name)
        with self._engine.begin() as conn:
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[clients.c.client_id], set_={"name": insert.excluded.name}
                )
            )

    def delete_client(self, client_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(sa.delete(clients).where(clients.c.client_id == client_id))
        self.invalidate(client_id)
