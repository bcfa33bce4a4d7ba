"""Status sink knobs (env prefix ``VIDPIPE_``)."""

from __future__ import annotations

from pydantic import Field

from vidpipe.settings import ConsumerSettings


class StatusSinkSettings(ConsumerSettings):
    group_id: str = "status-sink"
    max_records: int = Field(default=200, ge=1, description="heartbeats per batch")
    poll_timeout_ms: int = Field(default=500, ge=1)
    metrics_port: int | None = Field(default=9105, description="Prometheus /metrics port")
    redis_timeout_s: float = Field(default=2.0, gt=0, description="one Redis call's limit")
    gauges_every_s: float = Field(
        default=5.0, gt=0, description="how often idle polls recompute the state gauges"
    )
