"""Renderer knobs (env prefix ``VIDPIPE_``)."""

from __future__ import annotations

from pydantic import Field

from vidpipe.settings import ConsumerSettings


class RendererSettings(ConsumerSettings):
    group_id: str = "renderer"
    max_records: int = Field(default=32, ge=1)
    poll_timeout_ms: int = Field(default=200, ge=1)
    jpeg_quality: int = Field(default=85, ge=1, le=100)
    clip_frames: int = Field(default=100, ge=2, description="frame_seq span of one MP4 clip")
    clip_fps: float = Field(default=10.0, gt=0, le=120, description="playback rate of clips")
    clip_idle_s: float = Field(default=3.0, gt=0, description="write an open clip after idling")
    metrics_port: int | None = Field(default=9103, description="Prometheus /metrics port")
