"""Where each shared service lives (from ServiceSettings) and a real protocol call to check it.

Each ``check_*`` returns None when the service answers its own protocol within ``timeout_s``
and raises :class:`Unhealthy` with the reason otherwise. A plain TCP probe runs first so
that a closed port fails fast and quietly (aiokafka and pymongo log loudly on refusals).
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
import pymongo
import redis
from aiokafka.client import AIOKafkaClient
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.local.processes import port_open
from vidpipe.settings import ServiceSettings

TIMEOUT_S = 3.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class Unhealthy(Exception):
    """The service did not answer its protocol; the message says what failed."""


@dataclass(frozen=True)
class Endpoint:
    """``url`` is for people (no credentials); ``host``/``port`` are what gets probed."""

    host: str
    port: int
    url: str

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS


def _from_url(url: str, default_port: int) -> Endpoint:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    return Endpoint(host, port, f"{parts.scheme}://{host}:{port}")


def postgres_endpoint(settings: ServiceSettings) -> Endpoint:
    params = conninfo_to_dict(settings.postgres.dsn.get_secret_value())
    host = str(params.get("host") or "127.0.0.1")
    port = int(params.get("port") or 5432)
    return Endpoint(host, port, f"postgresql://{host}:{port}")


def maintenance_conninfo(settings: ServiceSettings, dbname: str = "postgres") -> str:
    """The settings' DSN pointed at another database (default: the ``postgres`` one)."""
    return make_conninfo(
        settings.postgres.dsn.get_secret_value(), dbname=dbname, connect_timeout=int(TIMEOUT_S)
    )


def redis_endpoint(settings: ServiceSettings) -> Endpoint:
    return _from_url(settings.redis.url, 6379)


def s3_endpoint(settings: ServiceSettings) -> Endpoint:
    return _from_url(settings.s3.endpoint_url, 80)


def kafka_endpoint(settings: ServiceSettings) -> Endpoint:
    first = settings.kafka.bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return Endpoint(host or "127.0.0.1", int(port or 9092), f"kafka://{first}")


def mlflow_endpoint(settings: ServiceSettings) -> Endpoint:
    return _from_url(settings.mlflow.tracking_uri, 5000)


def mongo_endpoint(settings: ServiceSettings) -> Endpoint:
    return _from_url(settings.mongo.url, 27017)


def _require_port(endpoint: Endpoint) -> None:
    if not port_open(endpoint.host, endpoint.port):
        raise Unhealthy(f"nothing listens on {endpoint.host}:{endpoint.port}")


def _http_ok(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            if response.status != 200:
                raise Unhealthy(f"GET {url} answered {response.status}")
    except (urllib.error.URLError, OSError) as exc:
        raise Unhealthy(f"GET {url} failed: {exc}") from exc


def check_postgres(settings: ServiceSettings) -> None:
    """``SELECT 1`` on the ``postgres`` maintenance database."""
    _require_port(postgres_endpoint(settings))
    try:
        with psycopg.connect(maintenance_conninfo(settings)) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise Unhealthy(f"SELECT 1 failed: {exc}") from exc


def check_redis(settings: ServiceSettings) -> None:
    """Redis ``PING``."""
    _require_port(redis_endpoint(settings))
    client = redis.Redis.from_url(
        settings.redis.url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
    )
    try:
        if not client.ping():
            raise Unhealthy("PING did not return PONG")
    except redis.RedisError as exc:
        raise Unhealthy(f"PING failed: {exc}") from exc
    finally:
        client.close()


def check_s3(settings: ServiceSettings) -> None:
    """SeaweedFS ``GET /healthz`` (the S3 gateway answers 200 when its filer is ready)."""
    _require_port(s3_endpoint(settings))
    _http_ok(settings.s3.endpoint_url.rstrip("/") + "/healthz")


async def _kafka_metadata(bootstrap_servers: str) -> None:
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(TIMEOUT_S * 1000)
    )
    try:
        await asyncio.wait_for(client.bootstrap(), TIMEOUT_S)  # sends a MetadataRequest
    finally:
        await client.close()


def check_kafka(settings: ServiceSettings) -> None:
    """A Kafka ``Metadata`` request through aiokafka (needs no running event loop)."""
    _require_port(kafka_endpoint(settings))
    try:
        asyncio.run(_kafka_metadata(settings.kafka.bootstrap_servers))
    except Exception as exc:  # aiokafka raises several unrelated types here
        raise Unhealthy(f"metadata request failed: {type(exc).__name__}: {exc}") from exc


def check_mlflow(settings: ServiceSettings) -> None:
    """MLflow server ``GET /health``."""
    _require_port(mlflow_endpoint(settings))
    _http_ok(settings.mlflow.tracking_uri.rstrip("/") + "/health")


def check_mongo(settings: ServiceSettings) -> None:
    """The ``ping`` command (``server_info()`` is not supported by the local stand-in)."""
    _require_port(mongo_endpoint(settings))
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        settings.mongo.url,
        serverSelectionTimeoutMS=int(TIMEOUT_S * 1000),
        connectTimeoutMS=int(TIMEOUT_S * 1000),
    )
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as exc:
        raise Unhealthy(f"ping failed: {exc}") from exc
    finally:
        client.close()
