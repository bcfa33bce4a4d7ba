"""A registered model's accuracy on a labelled dataset: run it, score it with COCO mAP.

The model runs through the same inference API as the detector (:mod:`vidpipe_ml.inference`),
keeping every detection down to :data:`vidpipe_ml.coco.SCORE_FLOOR`; labels are mapped to
the dataset's categories by name and boxes converted to COCO xywh pixels
(:func:`vidpipe_ml.coco.detections_to_coco`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from vidpipe.datasets import Dataset, InvalidDataset
from vidpipe_ml.coco import CocoMetrics, coco_metrics, detections_to_coco
from vidpipe_ml.inference import LoadedModel, decode_frame, detect_batch

log = logging.getLogger(__name__)

BATCH_SIZE = 8


@dataclass(frozen=True)
class Evaluation:
    """COCO metrics of one model on one dataset, and how long inference and scoring took
    (seconds)."""

    metrics: CocoMetrics
    images: int
    inference_s: float
    eval_s: float


def detect_dataset(
    model: LoadedModel, dataset: Dataset, device: torch.device, batch_size: int = BATCH_SIZE
) -> list[dict[str, Any]]:
    """COCO result entries for every image of ``dataset``.

    Raises:
        vidpipe_ml.inference.UndecodableImage: an image is not a decodable JPEG/PNG.
        vidpipe.datasets.InvalidDataset: an image is missing from storage.
    """
    category_ids = {str(c["name"]): int(c["id"]) for c in dataset.categories}
    unknown = sorted(set(category_ids) - set(model.labels))
    if unknown:
        log.warning(
            "model cannot detect dataset classes; their AP will be 0", extra={"classes": unknown}
        )
    images = dataset.images
    results: list[dict[str, Any]] = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        frames = [decode_frame(dataset.image_bytes(image)) for image in batch]
        for image, found in zip(batch, detect_batch(model, frames, device), strict=True):
            results.extend(detections_to_coco(int(image["id"]), found, category_ids))
    return results


def require_ground_truth(dataset: Dataset) -> None:
    """Raises :class:`~vidpipe.datasets.InvalidDataset` when ``dataset`` has no image or no
    non-crowd box (mAP is undefined); cheap, so callers check before loading a model."""
    if not dataset.images or not any(not a.get("iscrowd", 0) for a in dataset.annotations):
        raise InvalidDataset(
            f"dataset {dataset.name!r} has {len(dataset.images)} images and "
            f"{len(dataset.annotations)} annotations: nothing to measure mAP against"
        )


def evaluate_model(model: LoadedModel, dataset: Dataset, device: torch.device) -> Evaluation:
    """Run ``model`` on every image of ``dataset`` and compute its COCO metrics.

    Raises:
        vidpipe.datasets.InvalidDataset: no images, no non-crowd box, or a missing image.
        vidpipe_ml.inference.UndecodableImage: an image does not decode.
    """
    require_ground_truth(dataset)
    started = time.perf_counter()
    detections = detect_dataset(model, dataset, device)
    inference_s = time.perf_counter() - started
    metrics = coco_metrics(dataset.coco, detections)
    return Evaluation(metrics, len(dataset.images), inference_s, time.perf_counter() - started)
