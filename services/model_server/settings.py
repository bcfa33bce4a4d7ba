"""Model server knobs (env prefix ``VIDPIPE_``, e.g. ``VIDPIPE_GRPC_PORT=8081``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vidpipe.settings import ServiceSettings


class ModelServerSettings(ServiceSettings):
    grpc_port: int = Field(
        default=8081, ge=1, le=65535, description="Open Inference Protocol gRPC port"
    )
    http_port: int = Field(
        default=8080,
        ge=1,
        le=65535,
        description="KServe's REST port (v2 REST inference, /v2/health/live|ready, /metrics)",
    )
    grpc_threads: int = Field(default=4, ge=1, description="gRPC handler threads")
    grpc_max_message_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="largest request and response; a CenterNet core answers 5.2 MB per image",
    )
    device: str = Field(default="auto", description="'auto' (cuda if present), 'cpu', 'cuda:0'")
    backend: Literal["auto", "torch", "openvino"] = Field(
        default="auto",
        description="as the detector's local backends: auto = CUDA torch on a GPU, else "
        "OpenVINO when the version has an artifact that passed the parity gate, else torch",
    )
    precision: Literal["auto", "f32", "bf16", "int8"] = Field(
        default="auto", description="OpenVINO precision; auto: the fastest that passed"
    )
    torch_threads: int | None = Field(default=None, ge=1)
    default_alias: str = Field(
        default="production",
        description="the alias a request without model_version gets",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
    )
    alias_refresh_s: float = Field(default=10.0, gt=0, description="re-resolve aliases after")
    max_models: int = Field(default=4, ge=1, description="model versions kept loaded (LRU)")
    preload_models: list[str] = Field(
        default=["coco-centernet@production"],
        description="model references loaded before the server reports ready",
    )
    metrics_port: int | None = Field(
        default=9107, description="Prometheus /metrics, /healthz and /readyz port"
    )
