"""Pipeline benchmark: the model per backend, the pipeline per backend, and live RTSP runs;
prints JSON. Every figure is compared with a baseline measured in the same run.

1. ``models``: ``coco-centernet@production``'s network alone on the same prepared 512x512
   inputs, batch 1: PyTorch eager (channels-last) and OpenVINO f32, bf16 and int8 (IRs built
   here the way ``vidpipe models optimize`` builds them); images/s and the ratio to PyTorch.
   Also the whole detection call (prepare, network, decode + NMS) per backend.
2. ``pipeline``: decoder, detector, renderer and metrics sink as processes over the local
   Kafka API, S3, Postgres, Redis and MLflow on a file read as fast as it is published, once
   per detector backend; ``pipeline_over_slowest_stage`` = end-to-end fps / the slowest
   stage alone (decode, the backend's detection call, render).
3. ``remote_vs_local``: inference placement in one run: ``vidpipe run model-server``
   (KServe's ModelServer, Open Inference Protocol over gRPC on loopback) against the network
   in the detector's process, both on the default backend (``auto``): the detection call
   alone per image (batch 1, and batch 8) and the file pipeline end to end;
   ``remote_over_local`` = remote throughput / local throughput.
4. ``live``: a real H.264 clip served over RTSP in real time through the same services, at
   10 fps (vtest, 79.5 s) and at 25 fps (the bikes street clip, looped to 2 minutes), with
   the default backend and frame-age budget: capture -> detections p50/p95, frames dropped
   per stage and the drop rate, per-stage fps, and each service's RSS after the first minute
   and at the end.

Usage: ``python benchmarks/pipeline.py [--frames 200] [--skip-live | --live-only |
--models-only | --remote-only]`` after ``vidpipe up`` (``--remote-only``: section 3 alone).
torch, openvino and the services are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from infra.local.media import (
    fetch_vtest,
    prepare_vtest,
    start_rtsp_server,
    stop_rtsp_server,
    street_clip,
    transcode_h264,
)
from infra.local.processes import ServiceProcess, start_model_server
from vidpipe.settings import ServiceSettings
from vidpipe_cli.demo.runner import DETECTOR_CPU_ENV, PipelineRun, run_pipeline
from vidpipe_cli.models import calibration_frames, ensure_detector

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "var" / "assets"
LOGS = REPO / "var" / "log" / "bench"
RTSP_PORT = 8564


def read_frames(video: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def images_per_s(call: Callable[[int], object], count: int) -> float:
    call(0)  # warm-up: first-call compilation, allocations
    started = time.perf_counter()
    for i in range(count):
        call(i)
    return count / (time.perf_counter() - started)


def bench_decode(video: Path, count: int) -> float:
    cap = cv2.VideoCapture(str(video))
    started, done = time.perf_counter(), 0
    while done < count:
        ok, image = cap.read()
        if not ok:
            break
        cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        done += 1
    cap.release()
    return done / (time.perf_counter() - started)


def bench_render(frames: list[np.ndarray]) -> float:
    from services.renderer.draw import draw_detections
    from vidpipe.events import Detection

    dets = [
        Detection(box=(100 + 40 * i, 100, 140 + 40 * i, 220), score=0.8, label="person")
        for i in range(6)
    ]
    started = time.perf_counter()
    for frame in frames:
        cv2.imencode(".jpg", draw_detections(frame, dets), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return len(frames) / (time.perf_counter() - started)


def bench_models(settings: ServiceSettings, frames: list[np.ndarray]) -> dict[str, Any]:
    """Network alone and the whole detection call, per backend and precision."""
    import mlflow
    import torch

    from vidpipe.events import ModelRef
    from vidpipe_ml.backends import BackendChoice, OpenVinoNetwork
    from vidpipe_ml.inference import LoadedModel, detect_batch
    from vidpipe_ml.optimize import export_ir, quantize_ir

    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    module = mlflow.pytorch.load_model("models:/coco-centernet@production", map_location="cpu")
    module.eval()
    rgb = [torch.from_numpy(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).permute(2, 0, 1) for f in frames]
    with torch.inference_mode():
        prepared = [module.prepare([f.float().div(255.0)]) for f in rgb]
        calibration = [
            module.prepare([torch.from_numpy(np.ascontiguousarray(f)).float().div(255.0)])
            for f in calibration_frames()
        ]
    device = torch.device("cpu")
    ref = ModelRef(name="coco-centernet", version="bench")
    count = len(frames)
    with tempfile.TemporaryDirectory(prefix="vidpipe-bench-ir-") as tmp:
        f32 = export_ir(module, prepared[0], Path(tmp))
        int8 = quantize_ir(f32, calibration, Path(tmp))
        networks: dict[str, Callable[[torch.Tensor], object]] = {"torch-f32": module.network}
        for precision, xml in (("f32", f32), ("bf16", f32), ("int8", int8)):
            networks[f"openvino-{precision}"] = OpenVinoNetwork(xml, precision)  # type: ignore[arg-type]
        network_alone: dict[str, float] = {}
        detection_call: dict[str, float] = {}
        with torch.inference_mode():
            for name, network in networks.items():

                def alone(i: int, net: Callable[[torch.Tensor], object] = network) -> object:
                    return net(prepared[i])

                network_alone[name] = images_per_s(alone, count)
                backend, _, precision = name.partition("-")
                loaded = LoadedModel(
                    ref,
                    module,
                    tuple(module.labels),
                    BackendChoice(backend, precision),  # type: ignore[arg-type]
                    None if backend == "torch" else network,  # type: ignore[arg-type]
                )

                def call(i: int, model: LoadedModel = loaded) -> object:
                    return detect_batch(model, [rgb[i]], device)

                detection_call[name] = images_per_s(call, count)
    torch_alone, torch_call = network_alone["torch-f32"], detection_call["torch-f32"]
    return {
        "network_alone_images_per_s": {k: round(v, 2) for k, v in network_alone.items()},
        "network_alone_over_torch": {
            k: round(v / torch_alone, 2) for k, v in network_alone.items()
        },
        "detection_call_images_per_s": {k: round(v, 2) for k, v in detection_call.items()},
        "detection_call_over_torch": {
            k: round(v / torch_call, 2) for k, v in detection_call.items()
        },
    }


def bench_pipeline(
    settings: ServiceSettings,
    video: Path,
    count: int,
    backend: str,
    detector_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    clip = ASSETS / f"bench-{count}.avi"
    if not clip.exists():
        frames = read_frames(video, count)
        writer = cv2.VideoWriter(
            str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10, frames[0].shape[1::-1]
        )
        for frame in frames:
            writer.write(frame)
        writer.release()
    run = PipelineRun("bench", "bench-cam", f"file://{clip}", fps=120, expected_frames=count)
    summary, seen = run_pipeline(
        settings,
        run,
        LOGS,
        timeout_s=1200,
        detector_env={
            "VIDPIPE_BACKEND": backend,
            "VIDPIPE_MAX_FRAME_AGE_MS": "3600000",
            **(detector_env or {}),
        },
    )
    # First frame published by the decoder to last frame rendered.
    span_s = (max(seen.rendered.at.values()) - min(seen.decoded.at.values())) / 1e9
    return {
        "backend": summary["backend"],
        "frames": summary["frames_rendered"],
        "span_s": round(span_s, 1),
        "end_to_end_fps": round(summary["frames_rendered"] / span_s, 2),
        "stage_fps": summary["throughput_fps"],
    }


def bench_remote(
    settings: ServiceSettings, video: Path, frames: list[np.ndarray], count: int
) -> dict[str, Any]:
    """The network in the detector's process vs on a local model server, same backend."""
    import torch

    from vidpipe.modelref import parse_model_ref
    from vidpipe_ml.cache import ModelCache, RemoteTarget
    from vidpipe_ml.inference import LoadedModel, detect_batch

    server, url = start_model_server(LOGS, {"VIDPIPE_BACKEND": "auto", **DETECTOR_CPU_ENV})
    try:
        device = torch.device("cpu")
        selector = parse_model_ref("coco-centernet@production")
        caches = {
            "local": ModelCache(settings.mlflow.tracking_uri, device, backend="auto"),
            "remote": ModelCache(
                settings.mlflow.tracking_uri, device, backend="remote", remote=RemoteTarget(url)
            ),
        }
        rgb = [
            torch.from_numpy(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).permute(2, 0, 1) for f in frames
        ]
        calls: dict[str, dict[str, float]] = {}
        backends: dict[str, str] = {}
        chunks = [rgb[i : i + 8] for i in range(0, len(rgb) - 7, 8)]
        for name, cache in caches.items():
            model = cache.get(cache.resolve(selector))
            backends[name] = str(model.backend)

            def one(i: int, m: LoadedModel = model) -> object:
                return detect_batch(m, [rgb[i]], device)

            def eight(i: int, m: LoadedModel = model) -> object:
                return detect_batch(m, chunks[i], device)

            calls[name] = {
                "batch_1": images_per_s(one, len(rgb)),
                "batch_8": 8 * images_per_s(eight, len(chunks)),
            }
            cache.close()
        backends["model_server"] = _server_backend(server)
        local = bench_pipeline(settings, video, count, "auto")
        remote = bench_pipeline(settings, video, count, "remote", {"VIDPIPE_INFERENCE_URL": url})
    finally:
        server.stop()
    return {
        "backends": backends,
        "detection_call_images_per_s": {
            name: {k: round(v, 2) for k, v in figures.items()} for name, figures in calls.items()
        },
        "detection_call_remote_over_local": {
            k: round(calls["remote"][k] / calls["local"][k], 3) for k in calls["local"]
        },
        "pipeline": {"local": local, "remote": remote},
        "pipeline_remote_over_local": round(remote["end_to_end_fps"] / local["end_to_end_fps"], 3),
        "detector_stage_remote_over_local": round(
            remote["stage_fps"]["detector"] / local["stage_fps"]["detector"], 3
        ),
    }


def _server_backend(server: ServiceProcess) -> str:
    """What the model server's log says its preloaded model runs on."""
    for line in server.log_path.read_text().splitlines():
        if "preloaded on" in line:
            return line.split("preloaded on ", 1)[1].split()[0]
    return "unknown"


class RssSampler:
    """RSS (MB, from /proc) of the services, sampled every second in a thread."""

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, procs: list[ServiceProcess]) -> None:
        started = time.monotonic()

        def sample() -> None:
            while not self._stop.wait(1.0):
                for proc in procs:
                    rss = _rss_mb(proc.pid)
                    if rss is not None:
                        self.samples.setdefault(proc.name, []).append(
                            (time.monotonic() - started, rss)
                        )

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, dict[str, float]]:
        """Per service: RSS after the first minute, at the end, and end / first minute."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        report = {}
        for name, points in self.samples.items():
            after = [rss for t, rss in points if t >= 60.0]
            if not after:
                continue
            report[name] = {
                "after_60s_mb": round(after[0], 1),
                "end_mb": round(points[-1][1], 1),
                "end_over_60s": round(points[-1][1] / after[0], 3),
            }
        return report


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def bench_live(settings: ServiceSettings, clip: Path, fps: float, frames: int) -> dict[str, Any]:
    """``clip`` served over RTSP in real time, the camera sampled at ``fps``."""
    server = start_rtsp_server(clip, RTSP_PORT, "/live", LOGS / "rtsp-server.log")
    sampler = RssSampler()
    try:
        run = PipelineRun(
            "bench", f"live-{fps:g}", f"rtsp://127.0.0.1:{RTSP_PORT}/live", fps, frames
        )
        # the renderer's default clip length: one clip for the whole run would be held in
        # memory to its end and read as growth
        summary, _ = run_pipeline(
            settings, run, LOGS, timeout_s=1200, started=sampler.start, clip_frames=100
        )
    finally:
        stop_rtsp_server(server)
    memory = sampler.stop()
    dropped = summary["frames_dropped"]
    attempted = summary["frames_decoded"] + dropped["decoder"]
    return {
        "clip": clip.name,
        "fps": fps,
        "backend": summary["backend"],
        "frames_read": attempted,
        "frames_decoded": summary["frames_decoded"],
        "frames_detected": summary["frames_detected"],
        "frames_dropped": dropped,
        "detected_plus_dropped_equals_decoded": (
            summary["frames_detected"] + dropped["detector"] == summary["frames_decoded"]
        ),
        "drop_rate": round((dropped["decoder"] + dropped["detector"]) / max(attempted, 1), 4),
        "capture_to_detections_ms": summary["latency_ms"],
        "stage_fps": summary["throughput_fps"],
        "rss": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="frames of the file pipeline")
    parser.add_argument("--model-frames", type=int, default=60, help="frames per model figure")
    parser.add_argument("--skip-live", action="store_true", help="leave out the RTSP runs")
    parser.add_argument("--live-only", action="store_true", help="only the RTSP runs")
    parser.add_argument("--models-only", action="store_true", help="only the network figures")
    parser.add_argument(
        "--remote-only", action="store_true", help="only the model server vs in-process run"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    settings = ServiceSettings()
    version = ensure_detector(settings)
    if args.live_only:
        print(json.dumps({"model": f"coco-centernet/{version}", "live": bench_live_runs(settings)}))
        return
    video = fetch_vtest(ASSETS)
    frames = read_frames(video, args.model_frames)
    if args.remote_only:
        remote = bench_remote(settings, video, frames, args.frames)
        print(
            json.dumps({"model": f"coco-centernet/{version}", "remote_vs_local": remote}, indent=2)
        )
        return
    models = bench_models(settings, frames)
    if args.models_only:
        print(json.dumps({"model": f"coco-centernet/{version}", "models": models}, indent=2))
        return
    stages = {
        "decode_fps": round(bench_decode(video, args.frames), 1),
        "render_fps": round(bench_render(frames), 1),
    }
    pipelines = {}
    for backend, name in (("torch", "torch-f32"), ("auto", None)):
        result = bench_pipeline(settings, video, args.frames, backend)
        ran = name or "{name}-{precision}".format(**result["backend"])
        detect = models["detection_call_images_per_s"][ran]
        slowest = min(stages["decode_fps"], stages["render_fps"], detect)
        result["pipeline_over_slowest_stage"] = round(result["end_to_end_fps"] / slowest, 3)
        pipelines[ran] = result
    report: dict[str, Any] = {
        "machine": {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__},
        "model": f"coco-centernet/{version}",
        "models": models,
        "stages_alone": stages,
        "pipeline": pipelines,
        "remote_vs_local": bench_remote(settings, video, frames, args.frames),
    }
    if not args.skip_live:
        report["live"] = bench_live_runs(settings)
    print(json.dumps(report, indent=2))


def bench_live_runs(settings: ServiceSettings) -> dict[str, Any]:
    """vtest at 10 fps and the bikes street clip at 25 fps, served over RTSP in real time."""
    _, vtest_mp4 = prepare_vtest(ASSETS)
    street = transcode_h264(street_clip(), ASSETS / "bikes-2min.mp4", repeat=12)
    return {
        "10fps": bench_live(settings, vtest_mp4, 10.0, 795),
        "25fps": bench_live(settings, street, 25.0, 3000),
    }


if __name__ == "__main__":
    main()
