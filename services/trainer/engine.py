"""The training loop, as plain as torchvision's ``references/detection/engine.py``.

:func:`train_one_epoch` runs the model in train mode (it returns a dict of losses) and
:func:`evaluate` runs it in eval mode and scores the predictions with the evaluator's
pycocotools-based :func:`vidpipe_ml.coco.coco_metrics` (no AP arithmetic here).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rich.console import Console
from rich.progress import track
from torch import nn
from torch.utils.data import DataLoader

from services.trainer.data import CocoDetection, Target
from vidpipe_ml.coco import CocoMetrics, coco_metrics

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """The loss became NaN/inf (learning rate too high, or broken targets)."""


@dataclass(frozen=True)
class EpochStats:
    """``loss``: mean total loss over the epoch's iterations; ``losses``: mean of each
    component; ``images_per_s``: training throughput including data loading."""

    epoch: int
    iterations: int
    images: int
    seconds: float
    loss: float
    losses: dict[str, float]

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def _progress(iterable: Iterable[Any], total: int, desc: str) -> Iterable[Any]:
    """A rich progress bar when stderr is a terminal, the plain iterable otherwise (logs)."""
    if not sys.stderr.isatty():
        return iterable
    return track(iterable, total=total, description=desc, console=Console(stderr=True))


def _to_device(
    images: list[torch.Tensor], targets: list[Target], device: torch.device
) -> tuple[list[torch.Tensor], list[Target]]:
    return (
        [img.to(device, non_blocking=True) for img in images],
        [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets],
    )


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader[Any],
    device: torch.device,
    epoch: int,
    max_iterations: int | None = None,
    log_every: int = 10,
    check: Callable[[], None] | None = None,
) -> EpochStats:
    """One pass over ``data_loader`` (at most ``max_iterations`` optimizer steps).

    ``check`` runs before every step; whatever it raises (a stop or cancel request) ends
    the epoch there.

    Raises:
        NonFiniteLoss: the total loss is NaN or infinite (nothing more is trained).
    """
    model.train()
    total = len(data_loader) if max_iterations is None else min(max_iterations, len(data_loader))
    sums: dict[str, float] = {}
    images_seen, iterations = 0, 0
    started = time.perf_counter()
    for images, targets in _progress(data_loader, total, f"epoch {epoch}"):
        if iterations >= total:
            break
        if check is not None:
            check()
        images, targets = _to_device(images, targets, device)
        loss_dict: dict[str, torch.Tensor] = model(images, targets)
        loss = sum(loss_dict.values(), torch.zeros((), device=device))
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(
                f"epoch {epoch} iteration {iterations}: loss is {loss_value} "
                f"({ {k: v.item() for k, v in loss_dict.items()} })"
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        iterations += 1
        images_seen += len(images)
        for key, value in loss_dict.items():
            sums[key] = sums.get(key, 0.0) + value.item()
        sums["loss"] = sums.get("loss", 0.0) + loss_value
        if iterations % log_every == 0 or iterations == total:
            log.info(
                "train",
                extra={
                    "epoch": epoch,
                    "iter": f"{iterations}/{total}",
                    "loss": round(loss_value, 4),
                },
            )
    seconds = time.perf_counter() - started
    means = {k: v / max(iterations, 1) for k, v in sums.items()}
    return EpochStats(
        epoch=epoch,
        iterations=iterations,
        images=images_seen,
        seconds=seconds,
        loss=means.pop("loss", float("nan")),
        losses=means,
    )


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    data_loader: DataLoader[Any],
    device: torch.device,
    labels: Sequence[str] | None = None,
) -> CocoMetrics:
    """COCO bbox metrics of ``model`` on ``data_loader``'s :class:`CocoDetection` dataset.

    ``labels`` names the model's label ids (default: the dataset's own ids, i.e. the model
    was trained on it); predictions map to the dataset's categories **by name** and classes
    it lacks are dropped. Every score is kept (AP integrates the whole curve); boxes go
    from xyxy to COCO xywh pixels.
    """
    dataset = data_loader.dataset
    assert isinstance(dataset, CocoDetection)
    names = list(labels) if labels is not None else dataset.labels
    by_name = dict(zip(dataset.labels[1:], dataset.category_ids, strict=True))
    category_of = [by_name.get(name) for name in names]
    model.eval()
    results: list[dict[str, Any]] = []
    for images, targets in _progress(data_loader, len(data_loader), "eval"):
        outputs = model([img.to(device) for img in images])
        for target, out in zip(targets, outputs, strict=True):
            image_id = int(target["image_id"][0])
            for box, score, label in zip(
                out["boxes"].cpu().tolist(),
                out["scores"].cpu().tolist(),
                out["labels"].cpu().tolist(),
                strict=True,
            ):
                x1, y1, x2, y2 = box
                category = category_of[label] if 0 < label < len(category_of) else None
                if category is None or x2 <= x1 or y2 <= y1:
                    continue
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": category,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": float(score),
                    }
                )
    return coco_metrics(dataset.coco, results)
