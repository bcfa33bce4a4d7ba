"""Clients, cameras and per-client detection config: PostgreSQL is the truth, Redis a cache.

Reads go Redis first (``vidpipe:client-config:<client_id>``, JSON, TTL as a safety net),
then Postgres, then fill the cache. Every write through :class:`ConfigStore` updates
Postgres and deletes the cache key in the same call, so the detector sees a change on its
next batch without restarting. Unknown clients are cached as a short-lived negative entry
so a flood of frames from an unregistered client does not hammer Postgres.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vidpipe.settings import PostgresSettings, RedisSettings

log = logging.getLogger(__name__)

_CACHE_PREFIX = "vidpipe:client-config:"
_MISSING = "__missing__"


class ClientConfig(BaseModel):
    """What the detector does with one client's frames.

    Exactly one of ``model_alias`` / ``model_version`` is set. ``classes_of_interest`` empty
    means every label the model knows. ``score_threshold`` is in [0, 1].
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    client_id: str
    model_name: str = Field(min_length=1)
    model_alias: str | None = "production"
    model_version: str | None = None
    score_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    classes_of_interest: tuple[str, ...] = ()
    sampling_fps: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_model_selector(self) -> ClientConfig:
        if (self.model_alias is None) == (self.model_version is None):
            raise ValueError("set exactly one of model_alias or model_version")
        return self

    @property
    def model_uri(self) -> str:
        """MLflow registry URI: ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""
        if self.model_alias is not None:
            return f"models:/{self.model_name}@{self.model_alias}"
        return f"models:/{self.model_name}/{self.model_version}"


class Camera(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    camera_id: str
    client_id: str
    name: str
    url: str
    fps: float = Field(gt=0, le=120)
    enabled: bool = True


class ConfigStore:
    """Postgres + Redis access to clients, cameras and client configs (blocking calls)."""

    def __init__(
        self,
        postgres: PostgresSettings,
        redis_settings: RedisSettings,
        cache_ttl_s: int = 300,
        negative_ttl_s: int = 5,
    ) -> None:
        self._dsn = postgres.dsn.get_secret_value()
        self._redis = redis.Redis.from_url(redis_settings.url, socket_timeout=5)
        self._ttl = cache_ttl_s
        self._negative_ttl = negative_ttl_s
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    def _db(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._dsn, autocommit=True, row_factory=dict_row)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._redis.close()

    # ---- client configs -------------------------------------------------------------
    def get_client_config(self, client_id: str) -> ClientConfig | None:
        """The client's config, or ``None`` if the client has none (unknown client)."""
        cached = self._redis.get(_CACHE_PREFIX + client_id)
        if cached is not None:
            text = cached.decode() if isinstance(cached, bytes) else str(cached)
            return None if text == _MISSING else ClientConfig.model_validate_json(text)
        row = (
            self._db()
            .execute(
                "SELECT client_id, model_name, model_alias, model_version, score_threshold,"
                " classes_of_interest, sampling_fps FROM client_configs WHERE client_id = %s",
                (client_id,),
            )
            .fetchone()
        )
        if row is None:
            self._redis.set(_CACHE_PREFIX + client_id, _MISSING, ex=self._negative_ttl)
            return None
        row["classes_of_interest"] = tuple(row["classes_of_interest"] or ())
        config = ClientConfig.model_validate(row)
        self._redis.set(_CACHE_PREFIX + client_id, config.model_dump_json(), ex=self._ttl)
        return config

    def put_client_config(self, config: ClientConfig) -> None:
        """Upsert the config in Postgres, then invalidate the cache entry."""
        self._db().execute(
            "INSERT INTO client_configs (client_id, model_name, model_alias, model_version,"
            " score_threshold, classes_of_interest, sampling_fps, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, now())"
            " ON CONFLICT (client_id) DO UPDATE SET model_name = EXCLUDED.model_name,"
            " model_alias = EXCLUDED.model_alias, model_version = EXCLUDED.model_version,"
            " score_threshold = EXCLUDED.score_threshold,"
            " classes_of_interest = EXCLUDED.classes_of_interest,"
            " sampling_fps = EXCLUDED.sampling_fps, updated_at = now()",
            (
                config.client_id,
                config.model_name,
                config.model_alias,
                config.model_version,
                config.score_threshold,
                list(config.classes_of_interest),
                config.sampling_fps,
            ),
        )
        self.invalidate(config.client_id)

    def invalidate(self, client_id: str) -> None:
        self._redis.delete(_CACHE_PREFIX + client_id)
        log.info("client config cache invalidated", extra={"client_id": client_id})

    # ---- clients and cameras --------------------------------------------------------
    def put_client(self, client_id: str, name: str) -> None:
        self._db().execute(
            "INSERT INTO clients (client_id, name) VALUES (%s, %s)"
            " ON CONFLICT (client_id) DO UPDATE SET name = EXCLUDED.name",
            (client_id, name),
        )

    def delete_client(self, client_id: str) -> None:
        self._db().execute("DELETE FROM clients WHERE client_id = %s", (client_id,))
        self.invalidate(client_id)

    def put_camera(self, camera: Camera) -> None:
        self._db().execute(
            "INSERT INTO cameras (camera_id, client_id, name, url, fps, enabled, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, now())"
            " ON CONFLICT (camera_id) DO UPDATE SET client_id = EXCLUDED.client_id,"
            " name = EXCLUDED.name, url = EXCLUDED.url, fps = EXCLUDED.fps,"
            " enabled = EXCLUDED.enabled, updated_at = now()",
            (
                camera.camera_id,
                camera.client_id,
                camera.name,
                camera.url,
                camera.fps,
                camera.enabled,
            ),
        )

    def get_camera(self, camera_id: str) -> Camera | None:
        row = (
            self._db()
            .execute(
                "SELECT camera_id, client_id, name, url, fps, enabled FROM cameras"
                " WHERE camera_id = %s",
                (camera_id,),
            )
            .fetchone()
        )
        return None if row is None else Camera.model_validate(row)

    def list_cameras(self, client_ids: Sequence[str] | None = None) -> list[Camera]:
        query = "SELECT camera_id, client_id, name, url, fps, enabled FROM cameras"
        params: tuple[Any, ...] = ()
        if client_ids is not None:
            query += " WHERE client_id = ANY(%s)"
            params = (list(client_ids),)
        rows = self._db().execute(query + " ORDER BY camera_id", params).fetchall()
        return [Camera.model_validate(r) for r in rows]
