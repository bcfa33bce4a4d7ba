"""Connection settings shared by every vidpipe process.

Each service builds exactly one settings object in its ``__main__`` (a subclass of
:class:`ServiceSettings`) and passes it down; nothing reads the environment at import time.
Environment variables use the prefix ``VIDPIPE_`` and ``__`` for nesting, e.g.
``VIDPIPE_KAFKA__BOOTSTRAP_SERVERS=kafka:9092`` or ``VIDPIPE_S3__ENDPOINT_URL=http://minio:9000``.
The defaults are the loopback ports that ``vidpipe up`` starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vidpipe.urlpolicy import parse_allowed


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    """Where the brokers are and how to authenticate: PLAINTEXT on loopback (the local
    stack), SASL/SCRAM in production (``VIDPIPE_KAFKA__SECURITY_PROTOCOL=SASL_PLAINTEXT`` or
    ``SASL_SSL``, ``VIDPIPE_KAFKA__SASL_USERNAME`` / ``__SASL_PASSWORD``)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None


class S3Settings(_Section):
    endpoint_url: str = "http://127.0.0.1:8333"
    access_key: SecretStr = SecretStr("vidpipe")
    secret_key: SecretStr = SecretStr("vidpipe-secret")
    region: str = "us-east-1"


class PostgresSettings(_Section):
    """``dsn`` is a libpq URL; the local stack trusts loopback connections."""

    dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/vidpipe")


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"


class MongoSettings(_Section):
    url: str = "mongodb://127.0.0.1:27017"
    database: str = "vidpipe"


class MlflowSettings(_Section):
    tracking_uri: str = "http://127.0.0.1:5000"


class CameraSettings(_Section):
    """What camera URLs may reach, and the keys their credentials are sealed with
    (:mod:`vidpipe.urlpolicy`, :mod:`vidpipe.cameras`).

    ``allow``: exceptions to the refused address classes (loopback, link-local, metadata,
    unspecified, multicast, reserved; private ranges too when ``allow_private`` is off),
    each a CIDR with an optional port: ``127.0.0.1/32:8554``, ``10.0.0.0/8``,
    ``[::1/128]:8554``. ``keys``: Fernet keys (``Fernet.generate_key()``), newest first; the
    first seals, all open (rotation: put the new key first, run ``vidpipe cameras
    rotate-key``, then drop the old one). Empty: the public development key, with a warning.
    """

    allow_files: bool = Field(
        default=False, description="tenants may use file:// URLs (a superadmin always may)"
    )
    allow_private: bool = Field(
        default=True, description="10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7 allowed"
    )
    allow: tuple[str, ...] = ()
    keys: tuple[SecretStr, ...] = ()

    @field_validator("allow")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            parse_allowed(entry)  # fail at start-up, naming the entry
        return value


class RetentionSettings(_Section):
    """How long a client's frames, annotations, renders, clips, requests and frame metrics
    are kept when the client has no ``retention_days`` of its own (:mod:`vidpipe.retention`)."""

    default_days: int = Field(default=30, ge=1, le=36_500, description="platform default, days")


class ServiceSettings(BaseSettings):
    """Where the shared infrastructure lives. Services subclass this and add their own knobs."""

    model_config = SettingsConfigDict(
        env_prefix="VIDPIPE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    kafka: KafkaSettings = KafkaSettings()
    s3: S3Settings = S3Settings()
    postgres: PostgresSettings = PostgresSettings()
    redis: RedisSettings = RedisSettings()
    mongo: MongoSettings = MongoSettings()
    mlflow: MlflowSettings = MlflowSettings()
    cameras: CameraSettings = CameraSettings()
    retention: RetentionSettings = RetentionSettings()
    log_level: str = "INFO"
    metrics_host: str = Field(
        default="127.0.0.1",
        description="address the metrics/probe port binds (0.0.0.0 in a container)",
    )


class ConsumerSettings(ServiceSettings):
    """A Kafka consumer service: its consumer group, batch size and poll wait, and where it
    exposes Prometheus metrics (None: nowhere)."""

    group_id: str
    max_records: int = Field(default=500, ge=1, description="largest batch per poll")
    poll_timeout_ms: int = Field(default=500, ge=1, description="longest wait to fill a batch")
    metrics_port: int | None = Field(default=None, description="Prometheus /metrics port")
