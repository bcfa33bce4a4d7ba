"""Camera agent knobs (env prefix ``VIDPIPE_``): its consumer group and identity, how many
cameras it runs, how it restarts them, how often it reports and reconciles."""

from __future__ import annotations

from pydantic import Field

from vidpipe.agent_status import HEARTBEAT_S
from vidpipe.ids import ID_PATTERN, ID_RULE
from vidpipe.settings import ServiceSettings


class AgentSettings(ServiceSettings):
    group_id: str = Field(
        default="agents", description="consumer group on cameras.control.v1 (one per fleet)"
    )
    agent_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description=f"name in heartbeats ({ID_RULE}); default: host name and process id",
    )
    capacity: int = Field(
        default=16, ge=0, description="most cameras run at once; the rest are reported unassigned"
    )
    heartbeat_s: float = Field(default=HEARTBEAT_S, gt=0, description="seconds between heartbeats")
    reconcile_s: float = Field(
        default=30.0, gt=0, description="seconds between re-reads of the owned cameras' rows"
    )
    jpeg_quality: int = Field(default=90, ge=1, le=100)
    buffer_frames: int = Field(
        default=8, ge=1, description="frames waiting between read and upload"
    )
    reconnect_initial_s: float = Field(default=0.5, gt=0, description="first reconnect delay")
    reconnect_max_s: float = Field(default=5.0, gt=0, description="longest reconnect delay")
    restart_initial_s: float = Field(
        default=1.0, gt=0, description="first delay before restarting a crashed decoder"
    )
    restart_max_s: float = Field(default=30.0, gt=0, description="longest restart delay")
    crash_limit: int = Field(
        default=5, ge=1, description="crashes within crash_window_s that make a camera failed"
    )
    crash_window_s: float = Field(default=60.0, gt=0)
    failed_retry_s: float = Field(
        default=60.0, gt=0, description="seconds between retries of a failed camera"
    )
    metrics_port: int | None = Field(
        default=9101, description="Prometheus /metrics, /healthz and /readyz port"
    )
