"""The OpenVINO parity gate on a small splittable detector: a faithful export passes every
precision, a broken one is refused with its reasons; and how a backend is chosen."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.unit.fakes import MemoryDatasetStore
from tests.unit.ml.colour_split import ColourNetwork, ColourSplitDetector
from tests.unit.trainer.synthetic import synthetic_scenes
from vidpipe.datasets import Dataset, load_dataset, upload_dataset
from vidpipe.events import Detection, ModelRef
from vidpipe_ml import optimize
from vidpipe_ml.backends import BackendChoice, choose_backend
from vidpipe_ml.inference import LoadedModel, decode_frame
from vidpipe_ml.optimize import NotConvertible, match_rate

CPU = torch.device("cpu")


@pytest.fixture
def scenes() -> Dataset:
    store = MemoryDatasetStore()
    upload_dataset(store, "scenes", *synthetic_scenes(count=4, size=64))
    return load_dataset(store, "scenes")


def _reference(module: torch.nn.Module | None = None) -> LoadedModel:
    detector = module or ColourSplitDetector()
    labels: list[str] = list(getattr(detector, "labels", []))
    return LoadedModel(ModelRef(name="colour", version="1"), detector, tuple(labels))


def _calibration(dataset: Dataset) -> list[torch.Tensor]:
    return [decode_frame(dataset.image_bytes(image)) for image in dataset.images]


def test_optimize_when_export_is_faithful_then_every_precision_passes(
    scenes: Dataset, tmp_path: Path
) -> None:
    candidates, torch_speed = optimize.optimize(
        _reference(), scenes, _calibration(scenes), tmp_path
    )
    precisions = [c.precision for c in candidates]
    assert precisions[0] == "int8" and precisions[-1] == "f32"  # fastest tried first
    for candidate in candidates:
        assert candidate.passed, candidate
        assert candidate.map == candidate.map_torch == 1.0 and candidate.match_rate == 1.0
    assert torch_speed > 0
    assert (tmp_path / "f32" / "model.xml").is_file() and (
        tmp_path / "int8" / "model.xml"
    ).is_file()


def test_optimize_when_the_export_is_wrong_then_refused_with_reasons(
    scenes: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a converter that exports a different network than the model runs
    real_export = optimize.export_ir

    def broken_export(module: ColourSplitDetector, example: torch.Tensor, out: Path) -> Path:
        return real_export(ColourSplitDetector(ColourNetwork(sign=-1.0)), example, out)

    monkeypatch.setattr(optimize, "export_ir", broken_export)
    # when gated / then no precision passes, and the reasons say by how much
    candidates, _ = optimize.optimize(_reference(), scenes, _calibration(scenes), tmp_path)
    assert candidates and not any(c.passed for c in candidates)
    for candidate in candidates:
        assert candidate.map == 0.0 and candidate.match_rate == 0.0
        assert "mAP differs by -1.0000" in candidate.reason
        assert "only 0.0% of PyTorch's boxes matched" in candidate.reason


def test_optimize_when_model_is_not_splittable_then_not_convertible(
    scenes: Dataset, tmp_path: Path
) -> None:
    whole = torch.nn.Identity()
    whole.labels = ["x"]  # type: ignore[assignment]
    with pytest.raises(NotConvertible, match="no prepare/network/finish split"):
        optimize.optimize(_reference(whole), scenes, [], tmp_path)


def test_match_rate_counts_confident_reference_boxes_found_by_label_and_iou() -> None:
    person = Detection(box=(0, 0, 10, 10), score=0.9, label="person")
    weak = Detection(box=(50, 50, 60, 60), score=0.1, label="person")  # under 0.3: ignored
    shifted = Detection(box=(1, 0, 11, 10), score=0.5, label="person")  # IoU 0.82
    car = Detection(box=(0, 0, 10, 10), score=0.9, label="car")
    assert match_rate([[person, weak]], [[person]]) == 1.0
    assert match_rate([[person]], [[shifted]]) == 0.0
    assert match_rate([[person]], [[car]]) == 0.0
    assert match_rate([[weak]], [[]]) == 1.0


XML = {"f32": Path("f32.xml"), "bf16": Path("f32.xml")}


@pytest.mark.parametrize(
    ("requested", "precision", "device", "passed", "expected"),
    [
        ("auto", "auto", "cpu", XML, BackendChoice("openvino", "bf16")),
        ("auto", "f32", "cpu", XML, BackendChoice("openvino", "f32")),
        ("auto", "auto", "cpu", {}, BackendChoice("torch", "f32")),  # no artifact
        ("auto", "auto", "cuda", XML, BackendChoice("torch", "f32")),  # a GPU: CUDA torch
        ("torch", "auto", "cpu", XML, BackendChoice("torch", "f32")),
        ("openvino", "auto", "cpu", XML, BackendChoice("openvino", "bf16")),
    ],
)
def test_choose_backend(
    requested: str,
    precision: str,
    device: str,
    passed: dict[str, Path],
    expected: BackendChoice,
) -> None:
    recommended = "bf16" if passed else None
    chosen = choose_backend(
        requested, precision, torch.device(device), ColourSplitDetector(), passed, recommended
    )
    assert chosen == expected


@pytest.mark.parametrize(
    ("requested", "precision", "passed", "message"),
    [
        ("openvino", "auto", {}, "no OpenVINO artifact"),
        ("openvino", "int8", XML, "int8 did not pass the parity gate"),
        ("tensorrt", "auto", XML, "backend 'tensorrt'"),
    ],
)
def test_choose_backend_when_impossible_then_value_error(
    requested: str, precision: str, passed: dict[str, Path], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        choose_backend(requested, precision, CPU, ColourSplitDetector(), passed, "bf16")


def test_choose_backend_when_model_not_splittable_then_torch() -> None:
    chosen = choose_backend("auto", "auto", CPU, torch.nn.Identity(), XML, "bf16")
    assert chosen == BackendChoice("torch", "f32")
