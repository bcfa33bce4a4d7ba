"""Inference on a model server: the pipeline with ``VIDPIPE_BACKEND=remote`` against a real
``vidpipe run model-server`` (KServe's ModelServer, Open Inference Protocol over gRPC) finds
what the detector finds with the network in its own process."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
import torch
from kserve import InferenceGRPCClient, InferResponse

from infra.local.processes import ServiceProcess, free_port, start_model_server
from tests.integration.pipeline.conftest import LOGS, detections_for
from vidpipe.configstore import ConfigStore
from vidpipe.events import Detection
from vidpipe.settings import ServiceSettings
from vidpipe_cli.demo.runner import PipelineRun, run_pipeline
from vidpipe_ml.oip import decode_response, encode_request, served_by

pytestmark = pytest.mark.integration

FRAMES = 30
#: Both sides run the network in PyTorch f32: the comparison is of the placement, not of
#: the backend (OpenVINO's parity with PyTorch has its own gate and tests).
BACKEND = "torch"
PATIENT = {"VIDPIPE_MAX_FRAME_AGE_MS": "600000"}  # correctness, not liveness, is checked


@dataclass(frozen=True)
class ModelServer:
    proc: ServiceProcess
    url: str  # gRPC host:port
    http: str  # KServe's REST base URL
    metrics: str  # vidpipe's metrics and probes base URL


@pytest.fixture(scope="module")
def model_server(stack: None) -> Iterator[ModelServer]:
    http, metrics = free_port(), free_port()
    env = {
        "VIDPIPE_BACKEND": BACKEND,
        "VIDPIPE_HTTP_PORT": str(http),
        "VIDPIPE_METRICS_PORT": str(metrics),
    }
    proc, url = start_model_server(LOGS, env)
    yield ModelServer(proc, url, f"http://127.0.0.1:{http}", f"http://127.0.0.1:{metrics}")
    assert proc.stop() == 0, f"model server did not stop cleanly; see {proc.log_path}"


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read().decode()


async def _infer(url: str, model: str, version: str, batch: torch.Tensor) -> InferResponse:
    async with InferenceGRPCClient(url, timeout=60, retries=0) as client:
        return await client.infer(encode_request(model, version, batch))


def test_model_server_when_asked_by_alias_then_resolves_it_and_reports_health_and_metrics(
    model_server: ModelServer, model_version: str
) -> None:
    # given a running model server
    assert _get(f"{model_server.metrics}/readyz")[0] == 200
    assert _get(f"{model_server.http}/v2/health/ready")[0] == 200
    # when a batch asks for the alias, not a version
    batch = torch.rand(1, 3, 512, 512) * 255
    response = asyncio.run(_infer(model_server.url, "coco-centernet", "production", batch))
    # then the server resolved it: the answer names the version that ran, on its backend
    assert response.model_version == model_version
    assert served_by(response) == f"{BACKEND}-f32"
    peaks, wh = decode_response(response)
    assert peaks.shape[0] == wh.shape[0] == 1
    # and the request shows in the metrics (KServe's histograms, on vidpipe's port too)
    assert "request_predict_seconds_count" in _get(f"{model_server.metrics}/metrics")[1]
    # a name the registry does not know is NOT_FOUND, not a retryable outage
    with pytest.raises(grpc.RpcError) as refused:
        asyncio.run(_infer(model_server.url, "no-such-model", "", batch))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture
def clip(vtest_frames: list[np.ndarray], tmp_path: Path) -> Path:
    """30 real vtest frames as an MJPG file, read by the decoder as fast as it can."""
    path = tmp_path / "vtest-30.avi"
    height, width = vtest_frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (width, height))
    for frame in vtest_frames[:FRAMES]:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def client(stack: None, settings: ServiceSettings) -> Iterator[str]:
    client_id = f"it-remote-{uuid.uuid4().hex[:8]}"
    yield client_id
    store = ConfigStore(settings.postgres, settings.redis)
    store.delete_client(client_id)
    store.close()


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two xyxy boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 1.0


def unmatched(expected: list[Detection], found: list[Detection], min_iou: float) -> list[str]:
    """Detections of either list without a partner of the same label at ``min_iou`` or more
    in the other (one-to-one, best IoU first)."""
    left = list(found)
    missing = []
    for det in expected:
        scored = [(iou(det.box, f.box), i) for i, f in enumerate(left) if f.label == det.label]
        best = max(scored, default=(0.0, -1))
        if best[0] < min_iou:
            missing.append(f"missing {det.label} {det.box}")
            continue
        left.pop(best[1])
    return missing + [f"extra {f.label} {f.box}" for f in left]


def test_pipeline_when_backend_remote_then_same_detections_as_local(
    client: str,
    clip: Path,
    model_server: ModelServer,
    settings: ServiceSettings,
) -> None:
    # given the same 30 real frames for two cameras of one client
    url = f"file://{clip}"
    local = PipelineRun(client, f"{client}-local", url, fps=120, expected_frames=FRAMES)
    remote = PipelineRun(client, f"{client}-remote", url, fps=120, expected_frames=FRAMES)
    server, inference_url = model_server.proc, model_server.url
    # when one runs through the pipeline with the network in the detector, the other with
    # the network on the model server
    local_summary, _ = run_pipeline(
        settings, local, LOGS / local.camera_id, timeout_s=300,
        detector_env={"VIDPIPE_BACKEND": BACKEND, **PATIENT},
    )  # fmt: skip
    remote_summary, _ = run_pipeline(
        settings, remote, LOGS / remote.camera_id, timeout_s=300,
        detector_env={
            "VIDPIPE_BACKEND": "remote", "VIDPIPE_INFERENCE_URL": inference_url, **PATIENT
        },
    )  # fmt: skip
    # then every frame went through both, the remote one on the model server ...
    for summary in (local_summary, remote_summary):
        assert summary["frames_decoded"] == summary["frames_detected"] == FRAMES
        assert summary["dead_letters"] == 0
    assert local_summary["backend"] == {"name": BACKEND, "precision": "f32"}
    assert remote_summary["backend"] == {"name": "remote", "precision": "f32"}
    assert server.alive()
    # ... and every box of every frame has a partner: same label, IoU >= 0.99
    by_seq = {
        name: {e.frame_seq: list(e.detections) for e in detections_for(settings, run.camera_id)}
        for name, run in (("local", local), ("remote", remote))
    }
    assert sorted(by_seq["local"]) == sorted(by_seq["remote"]) and len(by_seq["local"]) == FRAMES
    assert sum(len(d) for d in by_seq["local"].values()) >= FRAMES * 2  # pedestrians found
    differences = {
        seq: problems
        for seq, dets in by_seq["local"].items()
        if (problems := unmatched(dets, by_seq["remote"][seq], min_iou=0.99))
    }
    assert differences == {}
