"""Unit tests for vidpipe.dataset_builder on an in-memory object store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.fakes import MemoryDatasetStore
from vidpipe.dataset_builder import (
    DatasetExists,
    build_from_camera,
    import_folder,
    xyxy_to_xywh,
)
from vidpipe.datasets import InvalidDataset, list_datasets, load_dataset
from vidpipe.topics import ANNOTATIONS_BUCKET, FRAMES_BUCKET
from vidpipe_cli.datasets import app as datasets_app

T0 = 1_700_000_000_000_000_000  # ns since epoch
S = "20261201t120000-0a0a"  # the stream session


def _frame(store: MemoryDatasetStore, seq: int, dets: list[dict[str, Any]], ts: int = T0) -> None:
    doc = {
        "frame_id": f"c1/cam/{S}/{seq}",
        "client_id": "c1",
        "camera_id": "cam",
        "session_id": S,
        "frame_seq": seq,
        "image": {"bucket": FRAMES_BUCKET, "key": f"c1/cam/{S}/{seq}.jpg"},
        "width": 100,
        "height": 80,
        "capture_ts_ns": ts,
        "model": {"name": "teacher", "version": "3"},
        "detections": dets,
    }
    store.put(ANNOTATIONS_BUCKET, f"c1/cam/{S}/{seq}.json", json.dumps(doc).encode(), "")
    store.put(FRAMES_BUCKET, f"c1/cam/{S}/{seq}.jpg", b"jpeg-%d" % seq, "image/jpeg")


def _det(label: str, score: float, box: list[float] | None = None) -> dict[str, Any]:
    return {"box": box or [10.0, 20.0, 40.0, 60.0], "score": score, "label": label}


@pytest.fixture
def store() -> MemoryDatasetStore:
    s = MemoryDatasetStore()
    _frame(s, 0, [_det("person", 0.9), _det("car", 0.5, [0, 0, 10, 10]), _det("person", 0.2)])
    _frame(s, 1, [_det("person", 0.1)], ts=T0 + 10)  # negative at min_score 0.4
    _frame(s, 2, [_det("bicycle", 0.7)], ts=T0 + 20)
    return s


def test_xyxy_to_xywh_converts_and_clips() -> None:
    assert xyxy_to_xywh([10, 20, 40, 60], 100, 80) == [10.0, 20.0, 30.0, 40.0]
    assert xyxy_to_xywh([-5, -5, 120, 90], 100, 80) == [0.0, 0.0, 100.0, 80.0]
    assert xyxy_to_xywh([50, 10, 50, 30], 100, 80) is None
    assert xyxy_to_xywh([150, 10, 160, 30], 100, 80) is None


def test_build_filters_scores_keeps_negatives(store: MemoryDatasetStore) -> None:
    summary = build_from_camera(store, "c1", "cam", "c1/ds", None, min_score=0.4)
    assert (summary.images, summary.negatives) == (3, 1)
    assert summary.boxes_by_label == {"bicycle": 1, "car": 1, "person": 1}
    assert summary.teachers == ["teacher@3"]
    ds = load_dataset(store, "c1/ds")
    assert [c["name"] for c in sorted(ds.categories, key=lambda c: c["id"])] == [
        "bicycle",
        "car",
        "person",
    ]
    assert [i["file_name"] for i in ds.images] == [f"{S}-{n}.jpg" for n in (0, 1, 2)]
    person = next(a for a in ds.annotations if a["category_id"] == 3)
    assert person["bbox"] == [10.0, 20.0, 30.0, 40.0]
    assert person["area"] == 1200.0 and person["iscrowd"] == 0
    assert ds.image_bytes(ds.images[2]) == b"jpeg-2"
    assert ds.coco["info"]["min_score"] == 0.4
    assert ds.coco["info"]["source"] == {"client_id": "c1", "camera_id": "cam"}


def test_build_label_since_and_max_frames(store: MemoryDatasetStore) -> None:
    summary = build_from_camera(store, "c1", "cam", "c1/ds", T0 + 10, 0.4, labels={"bicycle"})
    assert (summary.images, summary.negatives, summary.boxes_by_label) == (2, 1, {"bicycle": 1})
    capped = build_from_camera(store, "c1", "cam", "c1/ds2", None, 0.0, max_frames=1)
    assert capped.images == 1 and capped.boxes_by_label == {"car": 1, "person": 2}


def test_build_empty_window_names_camera(store: MemoryDatasetStore) -> None:
    with pytest.raises(InvalidDataset, match=r"'cam'.*capture_ts_ns >= "):
        build_from_camera(store, "c1", "cam", "c1/ds", T0 + 1000, 0.4)
    with pytest.raises(InvalidDataset, match="'other'"):
        build_from_camera(store, "c1", "other", "c1/ds", None, 0.4)


def test_build_refuses_existing_unless_overwrite(store: MemoryDatasetStore) -> None:
    build_from_camera(store, "c1", "cam", "c1/ds", None, 0.4)
    with pytest.raises(DatasetExists, match="overwrite"):
        build_from_camera(store, "c1", "cam", "c1/ds", None, 0.4)
    again = build_from_camera(store, "c1", "cam", "c1/ds", None, 0.95, overwrite=True)
    assert again.boxes == 0 and again.negatives == 3


def test_build_missing_frame_jpeg(store: MemoryDatasetStore) -> None:
    del store.objects[(FRAMES_BUCKET, f"c1/cam/{S}/1.jpg")]
    with pytest.raises(InvalidDataset, match=rf"c1/cam/{S}/1\.jpg"):
        build_from_camera(store, "c1", "cam", "c1/ds", None, 0.4)


def _coco_folder(tmp_path: Path) -> Path:
    coco = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
            {"id": 2, "file_name": "b.jpg", "width": 10, "height": 10},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 3, 3], "iscrowd": 0}
        ],
        "categories": [{"id": 7, "name": "dog"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    (tmp_path / "a.jpg").write_bytes(b"A")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "b.jpg").write_bytes(b"B")
    return tmp_path


def test_import_folder(tmp_path: Path) -> None:
    store = MemoryDatasetStore()
    summary = import_folder(store, _coco_folder(tmp_path), "imported")
    assert (summary.images, summary.negatives, summary.boxes_by_label) == (2, 1, {"dog": 1})
    ds = load_dataset(store, "imported")
    assert ds.image_bytes(ds.images[1]) == b"B"


def test_import_folder_missing_image(tmp_path: Path) -> None:
    (_coco_folder(tmp_path) / "images" / "b.jpg").unlink()
    with pytest.raises(InvalidDataset, match=r"b\.jpg"):
        import_folder(MemoryDatasetStore(), tmp_path, "imported")


def test_import_folder_bad_coco(tmp_path: Path) -> None:
    (tmp_path / "annotations.json").write_text(json.dumps({"images": []}))
    with pytest.raises(InvalidDataset, match="annotations"):
        import_folder(MemoryDatasetStore(), tmp_path, "imported")
    with pytest.raises(FileNotFoundError):
        import_folder(MemoryDatasetStore(), tmp_path / "nope", "imported")


def test_cli_build_prints_summary(
    store: MemoryDatasetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vidpipe_cli.datasets._store", lambda: store)
    args = ["build", "--from-camera", "cam", "--client", "c1", "--name", "ds"]
    result = CliRunner().invoke(datasets_app, [*args, "--labels", "person,car"])
    assert result.exit_code == 0, result.output
    assert "dataset c1/ds: 3 images (2 without boxes), 2 boxes" in result.output
    assert "teacher: teacher@3" in result.output
    again = CliRunner().invoke(datasets_app, args)
    assert again.exit_code == 1 and "already exists" in again.output
    listed = CliRunner().invoke(datasets_app, ["list"])
    assert listed.output.split() == ["c1/ds"]


def test_cli_import_shared_or_for_a_client(tmp_path: Path) -> None:
    store = MemoryDatasetStore()
    folder = _coco_folder(tmp_path)
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("vidpipe_cli.datasets._store", lambda: store)
        shared = runner.invoke(datasets_app, ["import", str(folder), "--name", "dogs"])
        own = runner.invoke(
            datasets_app, ["import", str(folder), "--name", "dogs", "--client", "c1"]
        )
    assert shared.exit_code == 0 and own.exit_code == 0, shared.output + own.output
    assert list_datasets(store) == ["c1/dogs", "dogs"]


@pytest.mark.parametrize("name", ["ds", "c2/ds", "c1/Bad Name"])
def test_build_refuses_a_name_the_client_does_not_own(store: MemoryDatasetStore, name: str) -> None:
    """A client's footage must not become a shared set or another client's dataset."""
    with pytest.raises(InvalidDataset, match=r"c1/<name>|invalid"):
        build_from_camera(store, "c1", "cam", name, None, 0.4)
    assert list_datasets(store) == []
