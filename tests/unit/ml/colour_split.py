"""A splittable detector for the synthetic scenes (:mod:`tests.unit.trainer.synthetic`):
its network is a 1x1 convolution scoring each pixel per class by colour, its ``finish``
boxes the pixels above 0.5. Exact boxes, so COCO mAP is 1.0 in PyTorch and in a faithful
export; small enough to convert and quantize in a unit test."""

from __future__ import annotations

import torch
from torch import Tensor, nn

LABELS = ["__background__", "blue-box", "red-box"]


class ColourNetwork(nn.Module):
    """``[B, 3, H, W]`` RGB 0..1 -> ``([B, 2, H, W]`` per-class scores: blue, red)."""

    def __init__(self, sign: float = 1.0) -> None:
        super().__init__()
        self.score = nn.Conv2d(3, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            self.score.weight.copy_(
                sign * torch.tensor([[-1.0, -1.0, 1.0], [1.0, -1.0, -1.0]])[..., None, None]
            )

    def forward(self, x: Tensor) -> tuple[Tensor]:
        return (self.score(x),)


class ColourSplitDetector(nn.Module):
    """The model contract, split as :class:`vidpipe_ml.backends.Splittable`."""

    def __init__(self, network: nn.Module | None = None) -> None:
        super().__init__()
        self.core = network or ColourNetwork()
        self.labels = list(LABELS)

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return self.finish(self.core(self.prepare(images)), images)

    def prepare(self, images: list[Tensor]) -> Tensor:
        return torch.stack([image.float() for image in images])

    def finish(self, outputs: tuple[Tensor, ...], images: list[Tensor]) -> list[dict[str, Tensor]]:
        results = []
        for scores in outputs[0]:
            boxes, labels = [], []
            for index, label in enumerate((1, 2)):
                ys, xs = torch.nonzero(scores[index] > 0.5, as_tuple=True)
                if len(xs):
                    boxes.append(torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]))
                    labels.append(label)
            results.append(
                {
                    "boxes": torch.stack(boxes).float() if boxes else torch.zeros(0, 4),
                    "scores": torch.full((len(labels),), 0.99),
                    "labels": torch.tensor(labels, dtype=torch.int64),
                }
            )
        return results
