"""COCO detection metrics computed by pycocotools' ``COCOeval`` (no AP arithmetic of our own).

Conventions: our detections are :class:`vidpipe.events.Detection` (box xyxy in pixels,
label name); COCO results are ``{"image_id", "category_id", "bbox": [x, y, w, h] px,
"score"}`` with categories mapped by name. ``iscrowd: 1`` ground truth are ignore regions,
with COCOeval's usual semantics: a detection matched to one counts neither as true nor as
false positive. Reported figures: mAP@[.5:.95], mAP@.5, mAP@.75 (area "all", 100
detections per image) and per-class AP.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from pydantic import BaseModel, ConfigDict

from vidpipe.datasets import InvalidDataset
from vidpipe.events import Detection

#: Lowest detection score kept: all the model returns (CenterNet's own floor is 0.05). COCO
#: AP integrates the whole precision/recall curve, so a serving threshold would truncate it.
SCORE_FLOOR = 0.05


class CocoMetrics(BaseModel):
    """COCOeval bbox summary. ``map`` is AP@[.5:.95], ``map_50``/``map_75`` AP at IoU .5/.75,
    all for area "all" and 100 detections per image, in 0..1. ``per_class_ap`` (AP@[.5:.95])
    and ``per_class_ap_50`` are keyed by category name and list only categories with ground
    truth (COCOeval reports -1 for the others)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    map: float
    map_50: float
    map_75: float
    per_class_ap: dict[str, float]
    per_class_ap_50: dict[str, float]


def coco_metrics(gt: Mapping[str, Any], detections: Sequence[Mapping[str, Any]]) -> CocoMetrics:
    """COCO bbox metrics of ``detections`` against ground truth ``gt`` (pycocotools).

    Args:
        gt: COCO dataset dict (``images``, ``annotations`` with ``bbox`` xywh px,
            ``categories``); ``area`` and ``iscrowd`` default to ``w*h`` and 0.
        detections: COCO result entries ``{"image_id", "category_id", "bbox": [x, y, w, h]
            px, "score"}``; may be empty (every AP is then 0).
    Raises:
        InvalidDataset: ``gt`` has no images or no non-crowd annotation (AP is undefined).
    """
    if not gt["images"] or all(a.get("iscrowd", 0) for a in gt["annotations"]):
        raise InvalidDataset("ground truth needs at least one image and one non-crowd box")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = _coco_from_dict(gt)
        coco_dt = _load_results(coco_gt, detections)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    # precision: [IoU thresholds T, recall points R, categories K, areas A, max dets M]
    precision = evaluator.eval["precision"]
    iou_50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    per_class, per_class_50 = {}, {}
    for k, category_id in enumerate(evaluator.params.catIds):
        name = str(coco_gt.cats[category_id]["name"])
        all_ious = precision[:, :, k, 0, -1]
        if (all_ious > -1).any():  # -1: no ground truth of this class
            per_class[name] = float(all_ious[all_ious > -1].mean())
            at_50 = all_ious[iou_50]
            per_class_50[name] = float(at_50[at_50 > -1].mean())
    return CocoMetrics(
        map=_clip(stats[0]),
        map_50=_clip(stats[1]),
        map_75=_clip(stats[2]),
        per_class_ap=per_class,
        per_class_ap_50=per_class_50,
    )


def detections_to_coco(
    image_id: int, detections: Sequence[Detection], category_ids: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Our detections (box xyxy px, label name) -> COCO results (bbox xywh px, category id).

    Labels missing from ``category_ids`` are dropped, as are scores below
    :data:`SCORE_FLOOR` and empty boxes.
    """
    results = []
    for det in detections:
        category_id = category_ids.get(det.label)
        x1, y1, x2, y2 = det.box
        if category_id is None or det.score < SCORE_FLOOR or x2 <= x1 or y2 <= y1:
            continue
        results.append(
            {
                "image_id": image_id,
                "category_id": category_id,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": det.score,
            }
        )
    return results


def _coco_from_dict(gt: Mapping[str, Any]) -> COCO:
    dataset = {
        "images": [dict(i) for i in gt["images"]],
        "categories": [dict(c) for c in gt["categories"]],
        "annotations": [
            {
                **a,
                "area": a.get("area", a["bbox"][2] * a["bbox"][3]),
                "iscrowd": a.get("iscrowd", 0),
            }
            for a in gt["annotations"]
        ],
    }
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _load_results(coco_gt: COCO, detections: Sequence[Mapping[str, Any]]) -> COCO:
    """``coco_gt.loadRes`` for bbox results; it cannot take an empty list, so an empty
    result set is built the same way by hand (no annotations)."""
    if detections:
        return coco_gt.loadRes([dict(d) for d in detections])
    empty = COCO()
    empty.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": []}
    empty.dataset["categories"] = list(coco_gt.dataset["categories"])
    empty.createIndex()
    return empty


def _clip(value: float) -> float:
    """COCOeval reports -1 when nothing could be measured; with ground truth checked
    beforehand this only happens for an area range we do not report."""
    return max(float(value), 0.0)
