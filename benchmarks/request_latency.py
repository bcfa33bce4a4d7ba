"""On-demand request latency: POST an image, follow it over the websocket to the result;
prints JSON. Compared with a baseline measured in the same run.

Processes over the local stack: the dashboard (``vidpipe run dashboard`` on a free port), the
detector and the renderer, with the demo's detector allocator settings. Per request: POST
``/api/v1/requests`` (multipart, a vtest frame, API key), open ``/api/v1/requests/ws``,
send the id, wait for the ``result`` message; latency = POST sent -> result received. The
server-side timestamps split it into created -> processing (queue), processing ->
processed (detection), processed -> finished (render and delivery).

Phases, one request at a time:
1. ``idle``: nothing else runs;
2. ``streaming``: a camera publishes vtest frames at 10 fps through the decoder's own code
   (JPEG to S3, ``FrameDecoded`` to Kafka) for the whole phase, so the detector is busy with
   frames (on 2 cores it cannot keep up with 10 fps) while requests arrive.
Baseline: ``model_alone_ms``, the detection call alone on the same image in this process
(the detector's inference path, default backend), and the idle phase for the streaming one.

Usage: ``python benchmarks/request_latency.py [--requests 30]`` after ``vidpipe up``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import sqlalchemy as sa
from websockets.sync.client import connect

from infra.local.media import fetch_vtest
from infra.local.processes import ServiceProcess, port_open, start_service
from services.dashboard.accounts import ApiKeyIn, create_api_key
from services.dashboard.auth import Principal, Role
from vidpipe.bus import make_producer
from vidpipe.configstore import ClientConfig, ConfigStore
from vidpipe.db import create_engine, detection_requests
from vidpipe.decoding.publisher import DecoderService
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings
from vidpipe_cli.demo.runner import DETECTOR_CPU_ENV
from vidpipe_cli.models import ensure_detector

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "var" / "assets"
LOGS = REPO / "var" / "log" / "bench"
STEPS = ("created", "processing", "processed", "finished")


def vtest_frames(count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(fetch_vtest(ASSETS)))
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, image = cap.read()
        assert ok, "vtest.avi ended early"
        frames.append(image)
    cap.release()
    return frames


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
        "mean_ms": round(statistics.fmean(values), 1),
        "max_ms": round(max(values), 1),
    }


def model_alone_ms(settings: ServiceSettings, jpeg: bytes, runs: int = 10) -> float:
    """The detection call alone on ``jpeg`` (median ms): the detector's inference path."""
    import torch

    from vidpipe.modelref import parse_model_ref
    from vidpipe_ml.cache import ModelCache
    from vidpipe_ml.inference import decode_frame, detect_batch

    models = ModelCache(settings.mlflow.tracking_uri, torch.device("cpu"), 60.0)
    model = models.get(models.resolve(parse_model_ref("coco-centernet@production")))
    image = decode_frame(jpeg)
    detect_batch(model, [image], torch.device("cpu"))  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        detect_batch(model, [image], torch.device("cpu"))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def prepare_client(settings: ServiceSettings) -> tuple[str, str]:
    """A fresh client with coco-centernet@production and an operator API key."""
    client_id = f"bench-req-{uuid.uuid4().hex[:6]}"
    store = ConfigStore(settings.postgres, settings.redis)
    try:
        store.put_client(client_id, client_id)
        store.put_client_config(
            ClientConfig(client_id=client_id, model_name="coco-centernet", score_threshold=0.3)
        )
        with store.engine.connect() as conn:
            admin = Principal(name="bench", role=Role.admin, client_id=client_id)
            key = create_api_key(conn, admin, ApiKeyIn(name="bench")).key
    finally:
        store.close()
    return client_id, key


def one_request(base: str, key: str, jpeg: bytes) -> tuple[float, str]:
    """POST, follow over the socket; (ms POST sent -> result received, request id)."""
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    posted = httpx.post(
        f"{base}/api/v1/requests",
        headers=headers,
        files={"image": ("frame.jpg", jpeg, "image/jpeg")},
        timeout=30,
    )
    posted.raise_for_status()
    request_id = posted.json()["request_id"]
    url = base.replace("http://", "ws://") + "/api/v1/requests/ws"
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        ws.send(json.dumps({"request_id": request_id}))
        while True:
            message = json.loads(ws.recv(timeout=120))
            if message["type"] == "result":
                elapsed = (time.perf_counter() - started) * 1000
                break
            if message["type"] in ("failed", "error"):
                raise RuntimeError(f"request {request_id}: {message}")
        while message.get("state") != "finished":  # the server marks it, then says so
            message = json.loads(ws.recv(timeout=10))
    return elapsed, request_id


def split(settings: ServiceSettings, ids: list[str]) -> dict[str, dict[str, float]]:
    """Server-side step durations (ms) of ``ids``: p50/p95 of each transition."""
    engine = create_engine(settings.postgres, pool_size=1)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(detection_requests).where(detection_requests.c.request_id.in_(ids))
        ).all()
    engine.dispose()
    spans: dict[str, list[float]] = {}
    for row in rows:
        for a, b in itertools.pairwise(STEPS):
            start, end = getattr(row, f"{a}_at"), getattr(row, f"{b}_at")
            spans.setdefault(f"{a}_to_{b}", []).append((end - start).total_seconds() * 1000)
    return {name: summary(values) for name, values in spans.items()}


def phase(
    settings: ServiceSettings, base: str, key: str, jpeg: bytes, count: int
) -> dict[str, Any]:
    latencies, ids = [], []
    for _ in range(count):
        elapsed, request_id = one_request(base, key, jpeg)
        latencies.append(elapsed)
        ids.append(request_id)
        time.sleep(0.2)
    return {"requests": count, "latency": summary(latencies), "steps": split(settings, ids)}


class Camera:
    """Publishes vtest frames at ``fps`` as the decoder does, until stopped."""

    def __init__(self, settings: ServiceSettings, client_id: str, fps: float = 10.0) -> None:
        self._settings, self._client_id, self._fps = settings, client_id, fps
        self._stop = threading.Event()
        self.published = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    async def _run(self) -> None:
        frames = vtest_frames(200)
        producer = make_producer(self._settings.kafka)
        await producer.start()
        try:
            decoder = DecoderService(
                ObjectStore(self._settings.s3), producer, self._client_id, f"{self._client_id}-cam"
            )
            next_at = time.monotonic()
            while not self._stop.is_set():
                image = frames[self.published % len(frames)]
                await decoder.handle_frame(self.published, image, time.time_ns())
                self.published += 1
                next_at += 1 / self._fps
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="requests per phase")
    args = parser.parse_args()
    settings = ServiceSettings()
    ensure_detector(settings)
    jpeg = cv2.imencode(".jpg", vtest_frames(20)[-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    alone = model_alone_ms(settings, jpeg)
    client_id, key = prepare_client(settings)
    port = 18000 + uuid.uuid4().int % 1000
    procs: list[ServiceProcess] = []
    try:
        procs.append(
            start_service(
                "detector", LOGS, {**DETECTOR_CPU_ENV, "VIDPIPE_METRICS_PORT": str(port + 1)}
            )
        )
        procs.append(start_service("renderer", LOGS, {"VIDPIPE_METRICS_PORT": str(port + 2)}))
        procs.append(
            start_service(
                "dashboard",
                LOGS,
                {"VIDPIPE_PORT": str(port), "VIDPIPE_LIMIT_REQUESTS_CLIENT": "10000/minute"},
            )
        )
        for proc in procs[:2]:
            proc.wait_logged(f"{proc.name} started", timeout_s=180)
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port):
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.2)
        base = f"http://127.0.0.1:{port}"
        one_request(base, key, jpeg)  # warm-up: connections, first model call
        idle = phase(settings, base, key, jpeg, args.requests)
        camera = Camera(settings, client_id)
        camera.start()
        time.sleep(5)  # the detector is busy with frames before the first request
        try:
            streaming = phase(settings, base, key, jpeg, args.requests)
        finally:
            camera.stop()
        streaming["camera_frames_published"] = camera.published
    finally:
        for proc in reversed(procs):
            proc.stop()
        ConfigStore(settings.postgres, settings.redis).delete_client(client_id)
    result = {
        "model_alone_ms": round(alone, 1),
        "idle": idle,
        "streaming": streaming,
        "ratios": {
            "idle_p50_over_model_alone": round(idle["latency"]["p50_ms"] / alone, 2),
            "streaming_p50_over_idle_p50": round(
                streaming["latency"]["p50_ms"] / idle["latency"]["p50_ms"], 2
            ),
            "streaming_p95_over_idle_p95": round(
                streaming["latency"]["p95_ms"] / idle["latency"]["p95_ms"], 2
            ),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
