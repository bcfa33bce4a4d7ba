"""Trainer knobs (env prefix ``VIDPIPE_``, e.g. ``VIDPIPE_DEVICE=cuda``)."""

from __future__ import annotations

import os
import socket
import uuid

from pydantic import Field

from vidpipe.settings import ServiceSettings


def default_trainer_id() -> str:
    """``<host>-<pid>-<random>``: unique per trainer process (the fencing owner)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class TrainerSettings(ServiceSettings):
    group_id: str = "trainer"
    device: str = Field(default="auto", description="'auto' (cuda if present), 'cpu', 'cuda:0'")
    torch_threads: int | None = Field(default=None, ge=1)
    experiment: str = Field(default="training", description="MLflow experiment of training runs")
    candidate_alias: str = "candidate"
    max_attempts: int = Field(default=3, ge=1, description="claims before a crashed job fails")
    heartbeat_s: float = Field(default=10.0, gt=0, description="running job heartbeat period")
    stale_after_s: float = Field(
        default=60.0, gt=0, description="a running job without heartbeat this long is orphaned"
    )
    recover_every_s: float = Field(
        default=30.0, gt=0, description="at most one orphan recovery per this many seconds"
    )
    trainer_id: str = Field(
        default_factory=default_trainer_id, description="owner recorded on the jobs it claims"
    )
    poll_s: float = Field(default=5.0, gt=0, description="Postgres poll for queued jobs")
    max_job_s: int = Field(default=6 * 3600, ge=60, description="Kafka max poll interval")
    max_iterations_per_epoch: int | None = Field(
        default=None, ge=1, description="cap on optimizer steps per epoch (smoke runs, tests)"
    )
    clients: list[str] | None = Field(
        default=None, description="train only these clients' jobs (None: every client)"
    )
    eval_batch_size: int = Field(default=4, ge=1)
    log_every: int = Field(default=10, ge=1, description="log the loss every N iterations")
    metrics_port: int | None = Field(default=9106, description="Prometheus /metrics port")
