"""Pipeline benchmark: each stage alone, then the whole pipeline, in one run; prints JSON.

Stages alone (in this process, no services):
- ``decode``: read vtest frames with OpenCV and JPEG-encode them (the decoder's CPU work);
- ``model``: ``coco-centernet@production`` on pre-decoded batches (the detector's model);
- ``render``: draw boxes on a frame and JPEG-encode it (the renderer's CPU work).
Then the real pipeline (decoder, detector, renderer, metrics sink as processes over the
local Kafka API, S3, Postgres, Redis, MLflow) on a file source read as fast as possible.
The headline is ``pipeline_over_slowest_stage``: end-to-end fps / the slowest stage's fps,
a ratio of two figures measured minutes apart on the same machine.

Usage: ``python benchmarks/pipeline.py [--frames 200] [--batch 8]`` after ``vidpipe up``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "var" / "assets"


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


def bench_decode(video: Path, count: int) -> float:
    """Frames/s of OpenCV decode + JPEG q90 encode."""
    started = time.perf_counter()
    cap = cv2.VideoCapture(str(video))
    done = 0
    while done < count:
        ok, image = cap.read()
        if not ok:
            break
        cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        done += 1
    cap.release()
    return done / (time.perf_counter() - started)


def bench_model(frames: list[np.ndarray], batch: int, tracking_uri: str) -> dict[str, Any]:
    """Images/s of the registered model alone on pre-decoded uint8 RGB tensors."""
    from vidpipe.modelref import parse_model_ref
    from vidpipe_ml.cache import ModelCache
    from vidpipe_ml.inference import detect_batch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cache = ModelCache(tracking_uri, device)
    model = cache.get(cache.resolve(parse_model_ref("coco-centernet@production")))
    tensors = [
        torch.from_numpy(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).permute(2, 0, 1) for f in frames
    ]
    detect_batch(model, tensors[:batch], device)  # warm-up
    started = time.perf_counter()
    for i in range(0, len(tensors), batch):
        detect_batch(model, tensors[i : i + batch], device)
    return {
        "fps": len(tensors) / (time.perf_counter() - started),
        "device": str(device),
        "model": f"{model.ref.name}/{model.ref.version}",
    }


def bench_model_process(batch: int, frames: int, env: dict[str, str]) -> dict[str, Any]:
    """The model stage in a fresh process (allocator settings only apply at start-up)."""
    cmd = [sys.executable, __file__, "--model-only", "--batch", str(batch), "--frames", str(frames)]
    out = subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


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


def bench_pipeline(video: Path, count: int) -> dict[str, Any]:
    from vidpipe.settings import ServiceSettings
    from vidpipe_cli.demo.runner import PipelineRun, run_pipeline

    clip = ASSETS / f"bench-{count}.avi"
    if not clip.exists():
        frames = read_frames(video, count)
        writer = cv2.VideoWriter(
            str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10, frames[0].shape[1::-1]
        )
        for frame in frames:
            writer.write(frame)
        writer.release()
    run = PipelineRun("bench", "bench-cam", str(clip), fps=120, expected_frames=count)
    summary, seen = run_pipeline(
        ServiceSettings(), run, REPO / "var" / "log" / "bench", timeout_s=1200
    )
    # First frame published by the decoder to last frame rendered.
    span_s = (max(seen.rendered.at.values()) - min(seen.decoded.at.values())) / 1e9
    return {
        "frames": summary["frames_rendered"],
        "span_s": round(span_s, 1),
        "end_to_end_fps": round(summary["frames_rendered"] / span_s, 2),
        "stage_fps": summary["throughput_fps"],
        "frame_age_ms": summary["latency_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from infra.local.media import fetch_vtest
    from vidpipe.settings import ServiceSettings
    from vidpipe_cli.demo.runner import DETECTOR_CPU_ENV

    video = fetch_vtest(ASSETS)
    frames = read_frames(video, min(args.frames, 96))
    if args.model_only:
        print(json.dumps(bench_model(frames, args.batch, ServiceSettings().mlflow.tracking_uri)))
        return
    stages = {
        "decode_fps": round(bench_decode(video, args.frames), 1),
        "render_fps": round(bench_render(frames), 1),
    }
    default_alloc = bench_model_process(args.batch, args.frames, {})
    model = bench_model_process(args.batch, args.frames, DETECTOR_CPU_ENV)
    stages["model_fps"] = round(model["fps"], 2)
    pipeline = bench_pipeline(video, args.frames)
    slowest = min(stages.values())
    print(
        json.dumps(
            {
                "machine": {"cpu_threads": torch.get_num_threads(), "device": model["device"]},
                "model": model["model"],
                "batch": args.batch,
                "stages_alone": stages,
                "model_fps_default_malloc": round(default_alloc["fps"], 2),
                "model_tuned_over_default_malloc": round(model["fps"] / default_alloc["fps"], 3),
                "pipeline": pipeline,
                "pipeline_over_slowest_stage": round(pipeline["end_to_end_fps"] / slowest, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
