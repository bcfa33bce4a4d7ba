"""Decoder knobs: which camera, how often, what quality (env prefix ``VIDPIPE_``)."""

from __future__ import annotations

from pydantic import Field

from vidpipe.settings import ServiceSettings


class DecoderSettings(ServiceSettings):
    camera_id: str = Field(description="camera row in Postgres that names client, URL and fps")
    client_id: str | None = Field(
        default=None,
        description="the camera's client; needed only when several clients use the camera id",
    )
    url: str | None = Field(default=None, description="override the camera's stream URL")
    fps: float | None = Field(default=None, gt=0, le=120, description="override sampling fps")
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    reconnect: bool = Field(default=True, description="reconnect when a live stream drops")
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    buffer_frames: int = Field(
        default=8,
        ge=1,
        description="frames waiting between read and upload; when full the oldest is skipped",
    )
    metrics_port: int | None = Field(
        default=None,
        description="Prometheus /metrics port (one decoder per camera)",
    )
