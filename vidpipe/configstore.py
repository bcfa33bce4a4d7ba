"""Clients and their detection config: PostgreSQL is the truth, Redis a cache.

Reads go Redis first (``vidpipe:client-config:<client_id>``, JSON, TTL as a safety net),
then Postgres, then fill the cache. Every write through :class:`ConfigStore` updates
Postgres and deletes the cache key in the same call, so the detector sees a change on its
next batch without restarting. Unknown clients are cached as a short-lived negative entry
so a flood of frames from an unregistered client does not hammer Postgres.
"""

from __future__ import annotations

import logging

import redis
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.dialects.postgresql import insert as pg_insert

from vidpipe.db import client_configs, clients, create_engine
from vidpipe.modelref import ModelSelector
from vidpipe.settings import PostgresSettings, RedisSettings

log = logging.getLogger(__name__)

_CACHE_PREFIX = "vidpipe:client-config:"
_MISSING = "__missing__"


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
    """Postgres + Redis access to clients and client configs (blocking calls)."""

    def __init__(
        self,
        postgres: PostgresSettings,
        redis_settings: RedisSettings,
        cache_ttl_s: int = 300,
        negative_ttl_s: int = 5,
    ) -> None:
        self._engine = create_engine(postgres, pool_size=2)
        self._redis = redis.Redis.from_url(redis_settings.url, socket_timeout=5)
        self._ttl = cache_ttl_s
        self._negative_ttl = negative_ttl_s

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()
        self._redis.close()

    # ---- client configs -------------------------------------------------------------
    def get_client_config(self, client_id: str) -> ClientConfig | None:
        """The client's config, or ``None`` if the client has none (unknown client)."""
        cached = self._redis.get(_CACHE_PREFIX + client_id)
        if cached is not None:
            text = cached.decode() if isinstance(cached, bytes) else str(cached)
            if text == _MISSING:
                return None
            try:
                return ClientConfig.model_validate_json(text)
            except ValidationError:
                # written by a version with other fields (e.g. before sampling_fps was
                # dropped): read Postgres again rather than fail until the TTL ends
                log.warning("stale client config cache entry", extra={"client_id": client_id})
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(*_CONFIG_COLUMNS).where(client_configs.c.client_id == client_id)
            ).one_or_none()
        if row is None:
            self._redis.set(_CACHE_PREFIX + client_id, _MISSING, ex=self._negative_ttl)
            return None
        values = dict(row._mapping)
        values["classes_of_interest"] = tuple(values["classes_of_interest"] or ())
        config = ClientConfig.model_validate(values)
        self._redis.set(_CACHE_PREFIX + client_id, config.model_dump_json(), ex=self._ttl)
        return config

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
        self._redis.delete(_CACHE_PREFIX + client_id)
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
