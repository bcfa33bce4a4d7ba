"""A stored COCO dataset (:mod:`vidpipe.datasets`) as torchvision detection data.

Model label ids are ``1..K`` for the dataset's categories sorted by COCO id (0 is
background); :class:`CocoDetection` keeps the mapping both ways so evaluation can turn
predictions back into COCO category ids.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from vidpipe.datasets import Dataset, InvalidDataset
from vidpipe_ml.torchvision_models import BACKGROUND

Target = dict[str, torch.Tensor]
Sample = tuple[torch.Tensor, Target]


class CocoDetection(TorchDataset[Sample]):
    """Item ``i``: ``(image [3, H, W] float32 RGB 0..1, target)`` with target ``boxes``
    ``[N, 4]`` float32 xyxy px (from COCO xywh), ``labels`` ``[N]`` int64 model ids and
    ``image_id`` ``[1]`` int64 (the COCO image id). ``iscrowd`` boxes are left out (they
    are ignore regions, not objects). Images download from S3 on access.

    Raises :class:`InvalidDataset` when the dataset has no categories or no images.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.coco = dataset.coco
        categories = sorted(dataset.categories, key=lambda c: int(c["id"]))
        if not categories or not dataset.images:
            raise InvalidDataset(f"dataset {dataset.name!r} has no categories or no images")
        self.category_ids = [int(c["id"]) for c in categories]
        self.labels = [BACKGROUND, *(str(c["name"]) for c in categories)]
        self._model_id = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self._images = dataset.images
        self._boxes: dict[int, list[dict[str, Any]]] = {}
        for ann in dataset.annotations:
            if not ann.get("iscrowd", 0):
                self._boxes.setdefault(int(ann["image_id"]), []).append(ann)

    @property
    def num_classes(self) -> int:
        """Categories + background."""
        return len(self.labels)

    def category_id(self, model_label: int) -> int:
        """Model label id (1..K) -> COCO category id."""
        return self.category_ids[model_label - 1]

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> Sample:
        image = self._images[index]
        data = self.dataset.image_bytes(image)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InvalidDataset(f"dataset {self.dataset.name!r}: {image['file_name']} undecodable")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        tensor = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
        anns = self._boxes.get(int(image["id"]), [])
        boxes = torch.tensor(
            [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
            dtype=torch.float32,
        ).reshape(-1, 4)
        labels = torch.tensor(
            [self._model_id[int(a["category_id"])] for a in anns], dtype=torch.int64
        )
        target = {
            "boxes": boxes,
            "labels": labels,
            "image_id": torch.tensor([int(image["id"])], dtype=torch.int64),
        }
        return tensor, target


def collate(batch: list[Sample]) -> tuple[list[torch.Tensor], list[Target]]:
    """Detection batches are lists (images differ in size), as in torchvision references."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def make_loader(data: CocoDetection, batch_size: int, shuffle: bool) -> DataLoader[Sample]:
    """Single-process loader (``num_workers=0``: images come from S3 one GET each, and the
    trainer shares small machines)."""
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, collate_fn=collate)
