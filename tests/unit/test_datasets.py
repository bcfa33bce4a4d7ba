"""Datasets in object storage: names, COCO checks, upload/load, the shipped vtest-persons."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.unit.scenes import PERSON, MemoryStore, scene
from vidpipe.datasets import (
    FRAME_INDEX_FIELD,
    VTEST_PERSONS_ANNOTATIONS,
    DatasetNotFound,
    InvalidDataset,
    check_coco,
    dataset_name,
    dataset_owner,
    dataset_usable_by,
    ensure_vtest_persons,
    list_datasets,
    load_dataset,
    upload_dataset,
)
from vidpipe.topics import DATASETS_BUCKET


@pytest.mark.parametrize(
    ("name", "owner"), [("vtest-persons", None), ("acme/dock", "acme"), ("a.b/c_1", "a.b")]
)
def test_dataset_owner(name: str, owner: str | None) -> None:
    assert dataset_owner(name) == owner
    assert dataset_usable_by(name, "acme") == (owner in (None, "acme"))


@pytest.mark.parametrize("name", ["Upper", "a/b/c", "/x", "x/", "acme/", "a b"])
def test_dataset_owner_when_malformed_then_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        dataset_owner(name)


def test_dataset_name_strips_the_annotations_key() -> None:
    assert dataset_name("acme/dock/annotations.json") == "acme/dock"
    assert dataset_name("acme/dock/") == "acme/dock"


def test_load_dataset_when_unknown_then_not_found_lists_available() -> None:
    # given two stored datasets
    store = MemoryStore()
    for name in ("alpha", "beta"):
        upload_dataset(store, name, scene([(PERSON, [1, 1, 5, 5])]), {"a.jpg": b"jpeg"})
    # when loading another / then the error names it and what exists
    with pytest.raises(DatasetNotFound) as err:
        load_dataset(store, "gamma")
    assert str(err.value) == (
        f"dataset 'gamma' not found in bucket '{DATASETS_BUCKET}'; available: alpha, beta"
    )
    assert err.value.available == ["alpha", "beta"]


def test_upload_then_load_dataset_round_trips_annotations_and_images() -> None:
    store = MemoryStore()
    gt = scene([(PERSON, [1, 1, 5, 5])])
    upload_dataset(store, "tiny", gt, {"a.jpg": b"jpeg-bytes"})
    loaded = load_dataset(store, "tiny")
    assert loaded.coco == gt
    assert loaded.image_bytes(loaded.images[0]) == b"jpeg-bytes"
    assert list_datasets(store) == ["tiny"]
    assert ("datasets", "tiny/images/a.jpg") in store.objects


def test_upload_dataset_when_image_bytes_missing_then_invalid_and_nothing_listed() -> None:
    store = MemoryStore()
    with pytest.raises(InvalidDataset, match=r"no bytes for images \['a.jpg'\]"):
        upload_dataset(store, "tiny", scene([(PERSON, [1, 1, 5, 5])]), {})
    assert list_datasets(store) == []


def test_check_coco_when_annotation_points_to_unknown_image_then_invalid() -> None:
    gt = scene([(PERSON, [1, 1, 5, 5])])
    gt["annotations"][0]["image_id"] = 99
    with pytest.raises(InvalidDataset, match="unknown image/category"):
        check_coco(gt, "bad")


def _write_video(path: Path, frames: int, size: tuple[int, int] = (64, 48)) -> None:
    """MJPG AVI whose frame ``i`` is a flat grey of level ``40 * i``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 40 * i, np.uint8))
    writer.release()


def test_ensure_vtest_persons_extracts_labelled_frames_once(tmp_path: Path) -> None:
    # given a 6-frame video and annotations labelling frames 1 and 4
    video = tmp_path / "v.avi"
    _write_video(video, 6)
    coco = scene([(PERSON, [1, 1, 5, 5])])
    coco["images"] = [
        {"id": 1, "file_name": "v_1.jpg", "width": 64, "height": 48, FRAME_INDEX_FIELD: 1},
        {"id": 2, "file_name": "v_4.jpg", "width": 64, "height": 48, FRAME_INDEX_FIELD: 4},
    ]
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps(coco))
    store = MemoryStore()
    # when ensured twice
    ensure_vtest_persons(store, video, annotations, name="v")
    puts = store.puts
    ensure_vtest_persons(store, video, annotations, name="v")
    # then both frames were uploaded as JPEGs of the right frame, and nothing the second time
    dataset = load_dataset(store, "v")
    decoded = [
        cv2.imdecode(np.frombuffer(dataset.image_bytes(i), np.uint8), 0) for i in dataset.images
    ]
    levels = [float(image.mean()) for image in decoded if image is not None]
    assert levels == [pytest.approx(40, abs=4), pytest.approx(160, abs=4)]
    assert puts == 3
    assert store.puts == puts


def test_ensure_vtest_persons_when_frame_past_end_then_invalid(tmp_path: Path) -> None:
    video = tmp_path / "v.avi"
    _write_video(video, 3)
    coco = scene([(PERSON, [1, 1, 5, 5])])
    coco["images"] = [
        {"id": 1, "file_name": "x.jpg", "width": 64, "height": 48, FRAME_INDEX_FIELD: 9}
    ]
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps(coco))
    with pytest.raises(InvalidDataset, match=r"has no frames \[9\]"):
        ensure_vtest_persons(MemoryStore(), video, annotations, name="v")


def test_vtest_persons_annotations_are_a_usable_person_set() -> None:
    # the hand-labelled set in the repository (see datasets/vtest-persons/README.md)
    coco = json.loads(VTEST_PERSONS_ANNOTATIONS.read_text())
    check_coco(coco, "vtest-persons")
    frames = sorted(i[FRAME_INDEX_FIELD] for i in coco["images"])
    boxes = [a for a in coco["annotations"] if not a["iscrowd"]]
    assert len(frames) >= 30 and len(set(frames)) == len(frames)
    assert frames[0] < 30 and frames[-1] > 760 and max(np.diff(frames)) <= 30  # whole video
    assert coco["categories"] == [{"id": 1, "name": "person", "supercategory": "person"}]
    assert len(boxes) >= 150
    assert {i["id"] for i in coco["images"]} == {a["image_id"] for a in boxes}  # none empty
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 768 and y + h <= 576 and h >= 12
        assert a["area"] == w * h
