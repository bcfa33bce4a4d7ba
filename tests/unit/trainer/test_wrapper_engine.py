"""Contract wrapper, dataset conversion and the training loop on an in-memory dataset."""

from __future__ import annotations

import pytest
import torch

from services.trainer.data import CocoDetection, make_loader
from services.trainer.engine import evaluate, train_one_epoch
from tests.unit.fakes import MemoryDatasetStore
from tests.unit.trainer.synthetic import BLUE, RED, synthetic_scenes
from vidpipe.datasets import load_dataset, upload_dataset
from vidpipe_ml.torchvision_models import BACKGROUND, ContractDetector, build_model, warm_start

ARCHITECTURES = ["ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"]


@pytest.fixture()
def data() -> CocoDetection:
    store = MemoryDatasetStore()
    coco, files = synthetic_scenes(count=3, size=96)
    upload_dataset(store, "scenes", coco, files)
    return CocoDetection(load_dataset(store, "scenes"))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_contract_detector_when_called_on_images_returns_contract_shapes(
    architecture: str,
) -> None:
    torch.manual_seed(0)
    model = ContractDetector(build_model(architecture, 3, 96), [BACKGROUND, "a", "b"]).eval()

    with torch.inference_mode():
        out = model([torch.rand(3, 96, 96), torch.rand(3, 80, 120)])

    assert model.labels == [BACKGROUND, "a", "b"]
    assert len(out) == 2
    for found in out:
        n = found["boxes"].shape[0]
        assert found["boxes"].shape == (n, 4) and found["boxes"].dtype == torch.float32
        assert found["scores"].shape == (n,) and found["scores"].dtype == torch.float32
        assert found["labels"].shape == (n,) and found["labels"].dtype == torch.int64
        assert bool(((found["labels"] >= 0) & (found["labels"] < 3)).all())


def test_build_model_when_architecture_unknown_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unsupported architecture"):
        build_model("yolo-v99", 3, 96)


def test_coco_detection_when_indexed_gives_xyxy_boxes_and_model_ids(data: CocoDetection) -> None:
    image, target = data[0]
    ann = [a for a in data.coco["annotations"] if a["image_id"] == 1]

    assert image.shape == (3, 96, 96) and float(image.max()) == 1.0
    assert data.labels == [BACKGROUND, "blue-box", "red-box"]  # sorted by COCO id 3, 7
    assert data.category_ids == [BLUE, RED]
    x, y, w, h = ann[0]["bbox"]
    assert target["boxes"][0].tolist() == [x, y, x + w, y + h]
    assert target["labels"].tolist() == [2, 1]  # red (id 7) -> 2, blue (id 3) -> 1
    assert target["image_id"].tolist() == [1]


def test_train_one_epoch_when_one_iteration_returns_finite_loss_and_metrics(
    data: CocoDetection,
) -> None:
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = build_model("ssdlite320_mobilenet_v3_large", data.num_classes, 96)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    loader = make_loader(data, batch_size=2, shuffle=True)

    stats = train_one_epoch(model, optimizer, loader, device, epoch=0, max_iterations=1)
    metrics = evaluate(model, make_loader(data, 3, shuffle=False), device)

    assert stats.iterations == 1 and stats.images == 2
    assert stats.loss > 0 and stats.images_per_s > 0
    assert set(stats.losses) == {"bbox_regression", "classification"}
    assert 0.0 <= metrics.map <= 1.0


def _tensors(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if k.startswith(prefix)}


def test_warm_start_when_labels_equal_then_every_tensor_copied() -> None:
    labels = [BACKGROUND, "a", "b"]
    torch.manual_seed(0)
    base = ContractDetector(build_model("ssdlite320_mobilenet_v3_large", 3, 96), labels)
    torch.manual_seed(1)
    fresh = build_model("ssdlite320_mobilenet_v3_large", 3, 96)

    copied = warm_start(fresh, base, labels)

    assert copied == len(fresh.state_dict())
    assert all(torch.equal(v, _tensors(base.model)[k]) for k, v in _tensors(fresh).items())


def test_warm_start_when_labels_differ_then_class_head_learnt_anew() -> None:
    torch.manual_seed(0)
    base = ContractDetector(
        build_model("ssdlite320_mobilenet_v3_large", 3, 96), [BACKGROUND, "a", "b"]
    )
    torch.manual_seed(1)
    fresh = build_model("ssdlite320_mobilenet_v3_large", 3, 96)  # same shapes, other classes
    head = "head.classification_head."
    before = _tensors(fresh, head)

    copied = warm_start(fresh, base, [BACKGROUND, "b", "c"])

    assert copied == len(fresh.state_dict()) - len(before)
    assert all(torch.equal(v, before[k]) for k, v in _tensors(fresh, head).items())
    backbone = _tensors(base.model, "backbone.")
    assert all(torch.equal(v, backbone[k]) for k, v in _tensors(fresh, "backbone.").items())


def test_warm_start_when_architecture_differs_then_value_error() -> None:
    base = ContractDetector(
        build_model("ssdlite320_mobilenet_v3_large", 3, 96), [BACKGROUND, "a", "b"]
    )
    fresh = build_model("fasterrcnn_mobilenet_v3_large_320_fpn", 3, 96)
    with pytest.raises(ValueError, match=r"SSD.*FasterRCNN"):
        warm_start(fresh, base, [BACKGROUND, "a", "b"])
