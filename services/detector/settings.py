"""Detector knobs (env prefix ``VIDPIPE_``, e.g. ``VIDPIPE_BATCH_SIZE=16``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vidpipe.settings import ServiceSettings


class DetectorSettings(ServiceSettings):
    group_id: str = "detector"
    batch_size: int = Field(default=8, ge=1, le=256, description="max frames per model call")
    batch_timeout_ms: int = Field(default=50, ge=1, description="max wait to fill a batch")
    fetch_concurrency: int = Field(default=16, ge=1, description="parallel S3 GETs")
    max_frame_age_ms: int | None = Field(
        default=2000,
        ge=1,
        description="drop (and count) frames older than this from capture, unless the client's "
        "config sets its own; None: never",
    )
    device: str = Field(default="auto", description="'auto' (cuda if present), 'cpu', 'cuda:0'")
    backend: Literal["auto", "torch", "openvino", "remote"] = Field(
        default="auto",
        description="auto: CUDA torch on a GPU, else OpenVINO when the model version has an "
        "artifact that passed the parity gate, else torch; remote: the network on the model "
        "server at inference_url (Open Inference Protocol gRPC), pre- and post-processing here",
    )
    inference_url: str | None = Field(
        default=None,
        description="remote backend: the model server's gRPC address, host:port",
        examples=["model-server:8081"],
    )
    inference_timeout_s: float = Field(default=30.0, gt=0, description="one remote call's deadline")
    inference_retry_s: float = Field(
        default=300.0,
        gt=0,
        description="how long an unavailable model server is retried before the detector gives "
        "up on the batch and exits (its restart policy starts it again); below the consumer's "
        "max poll interval (600 s), so the group keeps the member meanwhile",
    )
    precision: Literal["auto", "f32", "bf16", "int8"] = Field(
        default="auto", description="OpenVINO precision; auto: the fastest that passed"
    )
    torch_threads: int | None = Field(default=None, ge=1)
    alias_refresh_s: float = Field(default=10.0, gt=0, description="re-resolve aliases after")
    max_models: int = Field(default=4, ge=1, description="model versions kept loaded (LRU)")
    registry_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="longest wait for one MLflow registry answer; past it the last resolved "
        "version serves (stale) and the registry is asked again later",
    )
    registry_retries: int = Field(
        default=2, ge=0, description="the MLflow client's own HTTP retries per call"
    )
    model_load_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="longest wait for a first model load of a reference; past it the batch is "
        "retried (the load goes on)",
    )
    config_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="longest wait for Redis, then for Postgres, on a client-config read; past "
        "it the last known config serves (stale)",
    )
    preload_models: list[str] = Field(
        default=["coco-centernet@production"],
        description="model references loaded before consuming, so the first frames do not "
        "wait for a model load (and age past their budget)",
    )
    requests_group_id: str = Field(
        default="detector-requests",
        description="consumer group of on-demand requests (requests.v1), polled by its own loop",
    )
    requests_max_records: int = Field(default=8, ge=1, le=64, description="requests per batch")
    metrics_port: int | None = Field(default=9102, description="Prometheus /metrics port")

    @model_validator(mode="after")
    def _remote_needs_a_server(self) -> DetectorSettings:
        if self.backend == "remote" and not self.inference_url:
            raise ValueError("VIDPIPE_BACKEND=remote needs VIDPIPE_INFERENCE_URL (host:port)")
        return self
