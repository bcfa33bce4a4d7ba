"""The accuracy service's checks that need no registry: datasets are looked at first."""

from __future__ import annotations

import pytest

from services.accuracy import service
from services.accuracy.service import evaluate_accuracy
from tests.unit.scenes import MemoryStore, scene
from vidpipe.datasets import DatasetNotFound, InvalidDataset, upload_dataset
from vidpipe.settings import ServiceSettings


def test_evaluate_accuracy_when_dataset_unknown_then_dataset_not_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    monkeypatch.setattr(service, "ObjectStore", lambda _settings: store)
    with pytest.raises(DatasetNotFound, match=r"'nope' not found .* available: none"):
        evaluate_accuracy(ServiceSettings(), "nope", "coco-centernet@production")


def test_evaluate_accuracy_when_dataset_has_no_boxes_then_invalid_before_model_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a dataset with one image and no annotations
    store = MemoryStore()
    upload_dataset(store, "empty", scene([]), {"a.jpg": b"jpeg"})
    monkeypatch.setattr(service, "ObjectStore", lambda _settings: store)
    # when evaluated / then it fails with the counts (no registry is contacted)
    with pytest.raises(InvalidDataset, match="1 images and 0 annotations"):
        evaluate_accuracy(ServiceSettings(), "empty", "coco-centernet@production")
