"""The inference API every caller uses: JPEG decoding and batched detection with any
registered model (the detector, the accuracy evaluation and the trainer's checks alike).

Model contract (:class:`LoadedModel`): ``module(images)`` takes ``list[Tensor[3, H, W]]``
float32 RGB in 0..1 of any size and returns, per image, ``{"boxes": [N, 4] float xyxy px,
"scores": [N] float, "labels": [N] int64}`` (torchvision's detection inference contract);
``labels[i]`` names label id ``i``. A model whose network runs on another backend
(:mod:`vidpipe_ml.backends`) is called the same way: :meth:`LoadedModel.predict`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import torch

from vidpipe.events import Detection, ModelRef
from vidpipe.failures import BadInput
from vidpipe_ml.backends import TORCH, BackendChoice, Splittable


class UndecodableImage(ValueError):
    """The bytes are not a decodable JPEG/PNG."""


class InvalidDetections(BadInput):
    """The model's output for one image cannot be reported: a NaN/inf score or box, or a
    label id outside the model's labels (bad input for that frame: retrying repeats it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "invalid_detections")


class InferenceFailed(RuntimeError):
    """The backend refused a batch for a reason retrying will not change (e.g. a model
    server that does not know the model); the batch's frames cannot be detected."""


@dataclass(frozen=True)
class LoadedModel:
    """A resolved registry version, its module (see the module doc), its label names, and
    where its network runs: ``network`` is set when that is not the module itself (an
    OpenVINO network of a :class:`~vidpipe_ml.backends.Splittable` module's ``core``, or a
    model server's: :class:`~vidpipe_ml.remote.RemoteNetwork`)."""

    ref: ModelRef
    module: torch.nn.Module
    labels: tuple[str, ...]
    backend: BackendChoice = TORCH
    network: Callable[[torch.Tensor], tuple[torch.Tensor, ...]] | None = None

    def predict(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The model contract's call, on this model's backend."""
        if self.network is None:
            result: list[dict[str, torch.Tensor]] = self.module(images)
            return result
        split = cast(Splittable, self.module)
        return split.finish(self.network(split.prepare(images)), images)

    def run_core(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The core of a :class:`~vidpipe_ml.backends.Splittable` model on this model's
        backend: ``prepare``'s output ``[B, 3, H, W]`` -> the core's tensors (what a model
        server runs for a remote caller). Raises ``TypeError`` for a model that does not
        split."""
        if self.network is not None:
            return self.network(batch)
        if not isinstance(self.module, Splittable):
            raise TypeError(f"{self.ref.name}/{self.ref.version} does not split into a core")
        outputs: tuple[torch.Tensor, ...] = self.module.core(batch)
        return outputs


def decode_frame(data: bytes) -> torch.Tensor:
    """JPEG/PNG bytes -> uint8 tensor ``[3, H, W]``, RGB. Raises :class:`UndecodableImage`."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise UndecodableImage(f"undecodable image ({len(data)} bytes)")
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1)


def detect_batch(
    model: LoadedModel, images: Sequence[torch.Tensor], device: torch.device
) -> list[list[Detection]]:
    """Run ``model`` once on a batch of frames.

    Args:
        images: uint8 ``[3, H, W]`` RGB tensors (sizes may differ).
    Returns:
        Per image, every detection the model emits (boxes xyxy in that image's pixels,
        clamped to it, rounded to 0.1 px; scores clamped to [0, 1]), before any client
        filtering.
    Raises:
        InvalidDetections: the output of an image is invalid (see :func:`detect_each`).
    """
    results: list[list[Detection]] = []
    for found in detect_each(model, images, device):
        if isinstance(found, InvalidDetections):
            raise found
        results.append(found)
    return results


@torch.inference_mode()
def detect_each(
    model: LoadedModel, images: Sequence[torch.Tensor], device: torch.device
) -> list[list[Detection] | InvalidDetections]:
    """:func:`detect_batch`, with the images whose output is invalid (a NaN or infinite
    score or box, a label id outside ``model.labels``) answered by
    :class:`InvalidDetections` in their place, so one bad output spoils no other image."""
    inputs = [img.to(device, non_blocking=True).float().div_(255.0) for img in images]
    outputs = model.predict(inputs)
    results: list[list[Detection] | InvalidDetections] = []
    for img, out in zip(images, outputs, strict=True):
        height, width = int(img.shape[1]), int(img.shape[2])
        boxes = out["boxes"].float().cpu()
        raw_scores = out["scores"].float().cpu()
        labels = out["labels"].cpu().tolist()
        problem = _invalid_output(model, boxes, raw_scores, labels)
        if problem is not None:
            results.append(InvalidDetections(problem))
            continue
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        scores = raw_scores.clamp(0, 1).tolist()
        results.append(
            [
                Detection(
                    box=(round(b[0], 1), round(b[1], 1), round(b[2], 1), round(b[3], 1)),
                    score=round(s, 4),
                    label=model.labels[lbl],
                )
                for b, s, lbl in zip(boxes.tolist(), scores, labels, strict=True)
            ]
        )
    return results


def _invalid_output(
    model: LoadedModel, boxes: torch.Tensor, scores: torch.Tensor, labels: list[int]
) -> str | None:
    """Why one image's raw output cannot be reported, or None when it can."""
    name = f"models:/{model.ref.name}/{model.ref.version}"
    bad_scores = int((~torch.isfinite(scores)).sum())
    if bad_scores:
        return f"{name} returned {bad_scores} NaN/inf score(s)"
    bad_boxes = int((~torch.isfinite(boxes)).any(dim=-1).sum()) if boxes.numel() else 0
    if bad_boxes:
        return f"{name} returned {bad_boxes} box(es) with NaN/inf coordinates"
    outside = sorted({lbl for lbl in labels if not 0 <= lbl < len(model.labels)})
    if outside:
        return f"{name} returned label id(s) {outside[:5]} outside its {len(model.labels)} labels"
    return None
