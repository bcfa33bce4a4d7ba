"""Trainable torchvision detectors and the wrapper that makes them registry models.

Contract (see :class:`vidpipe_ml.inference.LoadedModel`): ``model.eval()``;
``model(list[Tensor[3, H, W] float32 RGB 0..1])`` returns per image
``{"boxes": [N, 4] float32 xyxy px, "scores": [N] float32, "labels": [N] int64}``, and
``model.labels[i]`` names label id ``i`` (``labels[0]`` is torchvision's background).

Pickled by reference to this module (``mlflow.pytorch.log_model(serialization_format=
"pickle")``), so ``vidpipe_ml`` must be importable where the model is loaded.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from vidpipe.jobs import ARCHITECTURE_NAMES

BACKGROUND = "__background__"
#: State-dict prefixes of the per-class layers: copied from a base model only when its label
#: list equals the dataset's (otherwise class ``i`` would mean something else).
CLASS_HEADS = ("head.classification_head.", "roi_heads.box_predictor.")


def build_model(architecture: str, num_classes: int, image_size: int) -> nn.Module:
    """A randomly initialised torchvision detector (no weight downloads are possible here).

    Args:
        architecture: ``ssdlite320_mobilenet_v3_large`` or
            ``fasterrcnn_mobilenet_v3_large_320_fpn``.
        num_classes: dataset categories + 1 (background, label id 0).
        image_size: side in pixels images are resized to (SSDlite: fixed square; Faster
            R-CNN: shorter side, longer side at most twice that).
    Raises:
        ValueError: an unsupported architecture.
    """
    detection = torchvision.models.detection
    if architecture == "ssdlite320_mobilenet_v3_large":
        model = detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=num_classes
        )
        transform = model.transform
        transform.min_size = (image_size,)
        transform.max_size = image_size
        transform.fixed_size = (image_size, image_size)
        return model
    if architecture == "fasterrcnn_mobilenet_v3_large_320_fpn":
        return detection.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=num_classes,
            min_size=image_size,
            max_size=image_size * 2,
        )
    raise ValueError(
        f"unsupported architecture {architecture!r}; use one of {', '.join(ARCHITECTURE_NAMES)}"
    )


def warm_start(model: nn.Module, base: ContractDetector, labels: list[str]) -> int:
    """Copy ``base``'s weights into the freshly built ``model`` (fine-tuning); returns how
    many state-dict tensors were copied.

    Every tensor whose name and shape match is copied, except the per-class layers
    (:data:`CLASS_HEADS`) when ``base.labels != labels``: backbone and box regression carry
    over to a new label set, class scores are learnt anew.

    Raises:
        ValueError: ``base`` is another architecture (e.g. SSDlite into Faster R-CNN).
    """
    if type(base.model) is not type(model):
        raise ValueError(
            f"base model is a {type(base.model).__name__}, the job trains a "
            f"{type(model).__name__}; choose the base model's architecture"
        )
    same_labels = list(base.labels) == list(labels)
    own = model.state_dict()
    copied = {
        key: tensor
        for key, tensor in base.model.state_dict().items()
        if key in own
        and own[key].shape == tensor.shape
        and (same_labels or not key.startswith(CLASS_HEADS))
    }
    model.load_state_dict(copied, strict=False)
    return len(copied)


class ContractDetector(nn.Module):
    """A trained torchvision detector plus its label names, answering the contract.

    ``labels`` has ``num_classes`` entries: ``[BACKGROUND, *category names by model id]``.
    """

    def __init__(self, model: nn.Module, labels: list[str]) -> None:
        super().__init__()
        self.model = model
        self.labels = list(labels)

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Inference only (call ``eval()`` first; training uses ``self.model`` directly)."""
        outputs = self.model(images)
        return [
            {
                "boxes": out["boxes"].to(torch.float32),
                "scores": out["scores"].to(torch.float32),
                "labels": out["labels"].to(torch.int64),
            }
            for out in outputs
        ]
