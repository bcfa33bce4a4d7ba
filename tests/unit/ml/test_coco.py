"""COCO mAP via pycocotools on synthetic scenes with exact boxes.

Expected values are derived by hand from COCOeval's definition: per IoU threshold, precision
is made monotone (max over higher recall), sampled at the 101 recall points 0, .01, .., 1
(each point takes the precision at the first detection reaching that recall) and averaged;
mAP@[.5:.95] averages that over the ten IoU thresholds .5, .55, .., .95.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.scenes import CAR, PERSON, det, scene
from vidpipe.datasets import InvalidDataset
from vidpipe.events import Detection
from vidpipe_ml.coco import coco_metrics, detections_to_coco


def exactly(expected: Any) -> Any:
    """Equal up to float summation error (COCOeval averages 101 recall points)."""
    return pytest.approx(expected, abs=1e-12)


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
