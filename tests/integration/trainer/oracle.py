"""A contract model that finds the synthetic scenes' rectangles by colour: exact boxes,
so its COCO mAP on :mod:`tests.unit.trainer.synthetic` data is 1.0. Registered in MLflow
by the gate tests as the "known good" version (pickled by reference to this module)."""

from __future__ import annotations

import torch
from torch import nn

from vidpipe_ml.torchvision_models import BACKGROUND

#: Label id -> RGB channel that is 1.0 inside that class's rectangle (ids as the trainer
#: assigns them: categories sorted by COCO id, blue (3) -> 1, red (7) -> 2).
LABELS = [BACKGROUND, "blue-box", "red-box"]
_CHANNEL = {1: 2, 2: 0}


class ColourBoxDetector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.labels = list(LABELS)

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        outputs = []
        for image in images:
            boxes, labels = [], []
            for label, channel in _CHANNEL.items():
                others = [c for c in range(3) if c != channel]
                mask = (image[channel] > 0.5) & (image[others].max(dim=0).values < 0.5)
                ys, xs = torch.nonzero(mask, as_tuple=True)
                if len(xs):
                    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                    boxes.append(torch.stack(box).float())
                    labels.append(label)
            outputs.append(
                {
                    "boxes": torch.stack(boxes) if boxes else torch.zeros(0, 4),
                    "scores": torch.full((len(labels),), 0.99),
                    "labels": torch.tensor(labels, dtype=torch.int64),
                }
            )
        return outputs
