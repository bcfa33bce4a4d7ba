"""Dashboard knobs (env prefix ``VIDPIPE_``, e.g. ``VIDPIPE_PORT=8080``,
``VIDPIPE_SECURE_COOKIES=true``, ``VIDPIPE_LIMIT_LOGIN_ACCOUNT=5/minute``).

Rates use the ``limits`` notation (``N/second|minute|hour``) and are counted in Redis, so
every replica shares them.
"""

from __future__ import annotations

from limits import parse
from pydantic import Field, field_validator

from vidpipe.jobs import JobQuota
from vidpipe.settings import ServiceSettings

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
#: the largest body ``POST /api/v1/requests`` reads (an image plus its form fields); the
#: image limit itself is ``request_max_bytes``
REQUEST_BODY_CEILING = 64 * 1024 * 1024


class DashboardSettings(ServiceSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    secure_cookies: bool | None = Field(
        default=None,
        description="Secure flag on the session cookie; unset: on, except when bound to loopback",
    )
    session_idle_s: int = Field(default=3600, ge=60, description="a session unused this long ends")
    session_max_age_s: int = Field(default=8 * 3600, ge=60, description="every session ends then")
    presign_expires_s: int = Field(default=120, ge=10, le=3600, description="presigned GET URLs")
    s3_public_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint as browsers reach it, if not s3.endpoint_url"
    )
    mlflow_ui_url: str | None = Field(
        default=None, description="MLflow UI for links; default mlflow.tracking_uri"
    )
    live_poll_s: float = Field(default=1.5, gt=0, le=30, description="live view S3 poll period")
    live_streams_per_user: int = Field(
        default=3, ge=1, description="concurrent live streams one user or API key may hold"
    )
    limit_login_account: str = Field(default="5/minute", description="sign-ins per e-mail")
    limit_login_ip: str = Field(default="20/minute", description="sign-ins per client address")
    limit_bad_keys_ip: str = Field(
        default="10/minute", description="failed API-key authentications per client address"
    )
    limit_expensive: str = Field(
        default="120/minute",
        description="calls per user or key of routes that list storage or the registry",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="largest request body")
    request_max_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        le=REQUEST_BODY_CEILING - 65536,
        description="largest image of an on-demand request (bytes as sent)",
    )
    request_max_pixels: int = Field(
        default=40_000_000, ge=1, description="largest image of a request, width x height"
    )
    limit_requests_client: str = Field(
        default="120/minute", description="on-demand detection requests per client"
    )
    request_poll_s: float = Field(
        default=0.05, gt=0, le=5, description="how often a request's socket checks its state"
    )
    request_wait_s: float = Field(
        default=120, gt=0, le=3600, description="longest a socket waits for a request's result"
    )
    request_render_wait_s: float = Field(
        default=5, ge=0, le=60, description="longest a result waits for its annotated image"
    )
    max_active_jobs: int = Field(default=3, ge=1, description="queued + running jobs per client")
    max_job_image_epochs: int = Field(
        default=500_000, ge=1, description="epochs x training images of one job"
    )

    @field_validator(
        "limit_login_account",
        "limit_login_ip",
        "limit_bad_keys_ip",
        "limit_expensive",
        "limit_requests_client",
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        parse(value)  # ValueError at start-up for a malformed rate
        return value

    @property
    def cookies_secure(self) -> bool:
        """The Secure flag: as set, else on unless the dashboard listens on loopback only."""
        if self.secure_cookies is not None:
            return self.secure_cookies
        return self.host not in LOOPBACK_HOSTS

    @property
    def job_quota(self) -> JobQuota:
        return JobQuota(self.max_active_jobs, self.max_job_image_epochs)
