"""Dashboard knobs (env prefix ``VIDPIPE_``, e.g. ``VIDPIPE_PORT=8080``,
``VIDPIPE_SESSION_SECRET=...``, ``VIDPIPE_SECURE_COOKIES=true`` behind HTTPS)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from vidpipe.settings import ServiceSettings


class DashboardSettings(ServiceSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    session_secret: SecretStr | None = Field(
        default=None,
        description="signs session cookies; unset = random per process (sessions end on restart,"
        " and replicas cannot share them)",
    )
    secure_cookies: bool = Field(default=False, description="Secure flag; on behind HTTPS")
    session_max_age_s: int = Field(default=8 * 3600, ge=60)
    presign_expires_s: int = Field(default=120, ge=10, le=3600, description="presigned GET URLs")
    s3_public_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint as browsers reach it, if not s3.endpoint_url"
    )
    mlflow_ui_url: str | None = Field(
        default=None, description="MLflow UI for links; default mlflow.tracking_uri"
    )
    live_poll_s: float = Field(default=1.5, gt=0, le=30, description="live view S3 poll period")
