"""Training benchmark: the trainer's images/s per architecture, against inference, in one run.

For each architecture the trainer supports (SSDlite320-MobileNetV3, Faster R-CNN
MobileNetV3-320-FPN), on the shipped ``vtest-persons`` set (31 frames of vtest.avi,
768x576, 185 person boxes) resized to ``--image-size``:
- ``train_images_per_s``: :func:`services.trainer.engine.train_one_epoch` (forward, loss,
  backward, SGD step; data loading included) over ``--iterations`` steps after one warm-up;
- ``inference_images_per_s``: the same model in eval mode on the same images (the baseline);
- ``train_over_inference``: their ratio, which is what to compare across machines.

No services are needed: the dataset is built in memory from the repository's annotations
and ``var/assets/vtest.avi`` (``make venv`` + ``vidpipe up`` or ``make demo`` fetch it).
Runs on CUDA when present (``--device``). Prints JSON.

Usage: ``python benchmarks/training.py [--iterations 8] [--batch 4] [--image-size 320]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "var" / "assets"


def bench_architecture(
    architecture: str, data: Any, batch: int, image_size: int, iterations: int, device: torch.device
) -> dict[str, float]:
    from services.trainer.data import make_loader
    from services.trainer.engine import train_one_epoch
    from vidpipe_ml.torchvision_models import build_model

    torch.manual_seed(0)
    model = build_model(architecture, data.num_classes, image_size).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.005, momentum=0.9, weight_decay=1e-4)
    loader = make_loader(data, batch, shuffle=True)
    train_one_epoch(model, optimizer, loader, device, epoch=0, max_iterations=1)  # warm-up
    stats = train_one_epoch(model, optimizer, loader, device, epoch=1, max_iterations=iterations)

    model.eval()
    images = [data[i][0].to(device) for i in range(min(len(data), batch * iterations))]
    with torch.inference_mode():
        model(images[:batch])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for start in range(0, len(images), batch):
            model(images[start : start + batch])
        if device.type == "cuda":
            torch.cuda.synchronize()
        inference = len(images) / (time.perf_counter() - started)
    return {
        "train_images_per_s": round(stats.images_per_s, 2),
        "train_iterations": stats.iterations,
        "final_loss": round(stats.loss, 3),
        "inference_images_per_s": round(inference, 2),
        "train_over_inference": round(stats.images_per_s / inference, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=8, help="timed optimizer steps")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda:0")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from infra.local.media import fetch_vtest
    from services.trainer.data import CocoDetection
    from services.trainer.service import pick_device
    from vidpipe.datasets import VTEST_PERSONS, ensure_vtest_persons, load_dataset
    from vidpipe.jobs import ARCHITECTURES
    from vidpipe.objectstore import ObjectStore
    from vidpipe.settings import ServiceSettings

    device = pick_device(args.device)
    store = ObjectStore(ServiceSettings().s3)
    ensure_vtest_persons(store, fetch_vtest(ASSETS))
    data = CocoDetection(load_dataset(store, VTEST_PERSONS))
    results = {
        name: bench_architecture(name, data, args.batch, args.image_size, args.iterations, device)
        for name in ARCHITECTURES.values()
    }
    ssdlite, fasterrcnn = (results[ARCHITECTURES[k]] for k in ("ssdlite", "fasterrcnn"))
    print(
        json.dumps(
            {
                "machine": {
                    "device": str(device),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "cpu_threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                },
                "dataset": f"{VTEST_PERSONS} ({len(data)} images)",
                "batch": args.batch,
                "image_size": args.image_size,
                "architectures": results,
                "fasterrcnn_over_ssdlite_train": round(
                    fasterrcnn["train_images_per_s"] / ssdlite["train_images_per_s"], 3
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
