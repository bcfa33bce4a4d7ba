"""Metrics sink knobs (env prefix ``VIDPIPE_``)."""

from __future__ import annotations

from pydantic import Field

from vidpipe.settings import ConsumerSettings


class MetricsSinkSettings(ConsumerSettings):
    group_id: str = "metrics-sink"
    max_records: int = Field(default=500, ge=1, description="documents per MongoDB bulk write")
    poll_timeout_ms: int = Field(default=500, ge=1)
    metrics_port: int | None = Field(default=9104, description="Prometheus /metrics port")
