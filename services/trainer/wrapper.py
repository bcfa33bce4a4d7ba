"""The model contract the detector loads, around a torchvision detection model.

Contract (see :class:`services.detector.model_cache.LoadedModel`): ``model.eval()``;
``model(list[Tensor[3, H, W] float32 RGB 0..1])`` returns per image
``{"boxes": [N, 4] float32 xyxy px, "scores": [N] float32, "labels": [N] int64}``, and
``model.labels[i]`` names label id ``i`` (``labels[0]`` is torchvision's background).

Pickled by reference to this module (``mlflow.pytorch.log_model(serialization_format=
"pickle")``), so ``services.trainer`` must be importable where the model is loaded.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

BACKGROUND = "__background__"


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
        f"unsupported architecture {architecture!r}; use ssdlite320_mobilenet_v3_large or "
        "fasterrcnn_mobilenet_v3_large_320_fpn"
    )


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
