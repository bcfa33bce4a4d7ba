"""COCO mAP via pycocotools on synthetic scenes with exact boxes, and the dataset format.

Expected values are derived by hand from COCOeval's definition: per IoU threshold, precision
is made monotone (max over higher recall), sampled at the 101 recall points 0, .01, .., 1
(each point takes the precision at the first detection reaching that recall) and averaged;
mAP@[.5:.95] averages that over the ten IoU thresholds .5, .55, .., .95.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from services.evaluator import accuracy
from services.evaluator.accuracy import (
    coco_metrics,
    detections_to_coco,
    evaluate_accuracy,
    parse_model_ref,
)
from services.evaluator.datasets import (
    FRAME_INDEX_FIELD,
    VTEST_PERSONS_ANNOTATIONS,
    DatasetNotFound,
    InvalidDataset,
    MemoryDatasetStore,
    check_coco,
    ensure_vtest_persons,
    list_datasets,
    load_dataset,
    upload_dataset,
)
from vidpipe.events import Detection
from vidpipe.settings import ServiceSettings
from vidpipe.topics import DATASETS_BUCKET

PERSON, CAR = 1, 3


def exactly(expected: Any) -> Any:
    """Equal up to float summation error (COCOeval averages 101 recall points)."""
    return pytest.approx(expected, abs=1e-12)


class MemoryStore(MemoryDatasetStore):
    """The in-memory dataset store, counting puts (re-uploads show up)."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        super().put(bucket, key, data, content_type)
        self.puts += 1


Box = tuple[int, list[float]]


def scene(boxes: Sequence[Box], crowd: Sequence[Box] = ()) -> dict[str, Any]:
    """One 200x100 image; ``boxes``/``crowd``: (category id, xywh) ground truth."""
    annotations = [
        {"id": i, "image_id": 1, "category_id": c, "bbox": b, "iscrowd": 0}
        for i, (c, b) in enumerate(boxes, start=1)
    ]
    annotations += [
        {"id": 100 + i, "image_id": 1, "category_id": c, "bbox": b, "iscrowd": 1}
        for i, (c, b) in enumerate(crowd)
    ]
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}],
        "annotations": annotations,
        "categories": [{"id": PERSON, "name": "person"}, {"id": CAR, "name": "car"}],
    }


def det(bbox: list[float], score: float, category: int = PERSON) -> dict[str, Any]:
    return {"image_id": 1, "category_id": category, "bbox": bbox, "score": score}


def test_coco_metrics_when_detections_are_exact_then_every_ap_is_one() -> None:
    # given two persons and a car, each detected with its exact box
    gt = scene([(PERSON, [10, 10, 20, 40]), (PERSON, [60, 10, 20, 40]), (CAR, [100, 50, 60, 30])])
    dets = [
        det(a["bbox"], 0.9 - 0.1 * i, a["category_id"]) for i, a in enumerate(gt["annotations"])
    ]
    # when evaluated
    m = coco_metrics(gt, dets)
    # then
    assert (m.map, m.map_50, m.map_75) == exactly((1.0, 1.0, 1.0))
    assert m.per_class_ap == exactly({"person": 1.0, "car": 1.0})


def test_coco_metrics_when_box_shifted_below_half_iou_then_it_is_a_miss() -> None:
    # given one person and a detection shifted 14 px right: IoU = 6*40 / (2*800 - 240) = 0.18
    gt = scene([(PERSON, [10, 10, 20, 40])])
    # when evaluated
    m = coco_metrics(gt, [det([24, 10, 20, 40], 0.9)])
    # then the only object is missed and the detection is a false positive at every IoU
    assert (m.map, m.map_50, m.map_75) == (0.0, 0.0, 0.0)


def test_coco_metrics_when_iou_is_063_then_matched_at_three_of_ten_thresholds() -> None:
    # given a detection shifted 4.5 px: IoU = 15.5 / 24.5 = 0.633, a match at .5, .55, .6 only
    gt = scene([(PERSON, [10, 10, 20, 40])])
    # when evaluated
    m = coco_metrics(gt, [det([14.5, 10, 20, 40], 0.9)])
    # then AP is 1 at three thresholds and 0 at seven: mean 0.3
    assert m.map_50 == exactly(1.0)
    assert m.map_75 == 0.0
    assert m.map == exactly(0.3)


def test_coco_metrics_when_false_positive_ranked_between_hits_then_ap_is_253_over_303() -> None:
    # given two persons; detections ranked hit (0.9), false positive (0.8), hit (0.7)
    gt = scene([(PERSON, [10, 10, 20, 40]), (PERSON, [60, 10, 20, 40])])
    dets = [
        det([10, 10, 20, 40], 0.9),
        det([120, 60, 10, 10], 0.8),
        det([60, 10, 20, 40], 0.7),
    ]
    # when evaluated
    m = coco_metrics(gt, dets)
    # then: PR points (R .5, P 1), (.5, .5), (1, 2/3); monotone precision is 1 for the 51
    # recall points 0..0.50 and 2/3 for the 50 points 0.51..1: AP = (51 + 50 * 2/3) / 101
    expected = (51 + 50 * 2 / 3) / 101  # = 253/303 = 0.83498...
    assert m.map_50 == exactly(expected)
    assert m.map == exactly(expected)  # exact boxes: same at every IoU


def test_coco_metrics_when_false_positive_ranked_last_then_ap_stays_one() -> None:
    # given the same scene with the false positive scored below both hits
    gt = scene([(PERSON, [10, 10, 20, 40]), (PERSON, [60, 10, 20, 40])])
    dets = [det([10, 10, 20, 40], 0.9), det([60, 10, 20, 40], 0.8), det([120, 60, 10, 10], 0.7)]
    # when evaluated / then full recall is reached at precision 1, so AP is 1
    assert coco_metrics(gt, dets).map_50 == exactly(1.0)


def test_coco_metrics_when_no_detections_then_zero() -> None:
    gt = scene([(PERSON, [10, 10, 20, 40])])
    m = coco_metrics(gt, [])
    assert (m.map, m.map_50, m.map_75) == (0.0, 0.0, 0.0)
    assert m.per_class_ap == {"person": 0.0}


def test_coco_metrics_when_detection_hits_crowd_region_then_it_is_ignored() -> None:
    # given a person and an ignore region (iscrowd=1), the region's detection scored highest
    gt = scene([(PERSON, [10, 10, 20, 40])], crowd=[(PERSON, [100, 10, 30, 60])])
    dets = [det([102, 12, 26, 56], 0.95), det([10, 10, 20, 40], 0.9)]
    # when evaluated / then it is neither a false positive nor a required hit
    assert coco_metrics(gt, dets).map == exactly(1.0)


def test_coco_metrics_when_class_has_no_ground_truth_then_it_is_not_reported() -> None:
    gt = scene([(PERSON, [10, 10, 20, 40])])
    m = coco_metrics(gt, [det([10, 10, 20, 40], 0.9), det([50, 50, 10, 10], 0.9, CAR)])
    assert m.per_class_ap == exactly({"person": 1.0})
    assert m.map == exactly(1.0)


def test_coco_metrics_when_only_crowd_ground_truth_then_invalid() -> None:
    with pytest.raises(InvalidDataset, match="non-crowd"):
        coco_metrics(scene([], crowd=[(PERSON, [10, 10, 20, 40])]), [])


def test_detections_to_coco_converts_xyxy_to_xywh_and_maps_names() -> None:
    found = [
        Detection(box=(10.0, 20.0, 50.0, 100.0), score=0.8, label="person"),
        Detection(box=(0.0, 0.0, 5.0, 5.0), score=0.9, label="zebra"),  # not in the dataset
        Detection(box=(0.0, 0.0, 5.0, 5.0), score=0.01, label="person"),  # below the floor
        Detection(box=(3.0, 3.0, 3.0, 9.0), score=0.5, label="person"),  # zero width
    ]
    assert detections_to_coco(7, found, {"person": 1}) == [
        {"image_id": 7, "category_id": 1, "bbox": [10.0, 20.0, 40.0, 80.0], "score": 0.8}
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("coco-centernet@production", ("coco-centernet", "production", None)),
        ("coco-centernet/3", ("coco-centernet", None, "3")),
    ],
)
def test_parse_model_ref(text: str, expected: tuple[str, str | None, str | None]) -> None:
    assert parse_model_ref(text) == expected


@pytest.mark.parametrize("text", ["coco-centernet", "a@b/c", "@prod", "a/", "a b@c"])
def test_parse_model_ref_when_malformed_then_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="NAME@ALIAS or NAME/VERSION"):
        parse_model_ref(text)


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


def test_evaluate_accuracy_when_dataset_unknown_then_dataset_not_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    monkeypatch.setattr(accuracy, "ObjectStore", lambda _settings: store)
    with pytest.raises(DatasetNotFound, match=r"'nope' not found .* available: none"):
        evaluate_accuracy(ServiceSettings(), "nope", "coco-centernet@production")


def test_evaluate_accuracy_when_dataset_has_no_boxes_then_invalid_before_model_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a dataset with one image and no annotations
    store = MemoryStore()
    upload_dataset(store, "empty", scene([]), {"a.jpg": b"jpeg"})
    monkeypatch.setattr(accuracy, "ObjectStore", lambda _settings: store)
    # when evaluated / then it fails with the counts (no registry is contacted)
    with pytest.raises(InvalidDataset, match="1 images and 0 annotations"):
        evaluate_accuracy(ServiceSettings(), "empty", "coco-centernet@production")


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
