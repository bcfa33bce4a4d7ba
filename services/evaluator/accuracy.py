"""Model accuracy on a labelled dataset: COCO mAP computed by pycocotools' ``COCOeval``.

``evaluate_accuracy(settings, "vtest-persons", "coco-centernet@production")``:

1. loads the dataset (:mod:`services.evaluator.datasets`: COCO JSON + images in S3);
2. resolves and loads the model only through the detector's
   :class:`services.detector.model_cache.ModelCache` (``NAME@ALIAS`` or ``NAME/VERSION``);
3. runs it on every image in batches with :func:`services.detector.inference.detect_batch`,
   keeping every detection at or above :data:`SCORE_FLOOR` (COCO AP integrates the whole
   precision/recall curve, so a serving threshold would truncate it);
4. maps detection labels to the dataset's category ids **by name** (classes the dataset
   does not have are dropped), converts boxes from our xyxy pixels to COCO xywh pixels;
5. computes mAP@[.5:.95], mAP@.5, mAP@.75 (area "all", 100 detections per image) and per-class
   AP with ``pycocotools.cocoeval.COCOeval`` (bbox) — no AP arithmetic of our own;
6. logs an MLflow run (experiment ``accuracy-reports``) and inserts a row into Postgres
   ``accuracy_reports``, and tags the registered model version with its score.

``iscrowd: 1`` ground truth are ignore regions, with COCOeval's usual semantics: a
detection matched to one counts neither as true nor as false positive.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import psycopg
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from psycopg.types.json import Jsonb
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from pydantic import BaseModel, ConfigDict

from services.detector.inference import decode_frame, detect_batch
from services.detector.model_cache import LoadedModel, ModelCache
from services.evaluator.datasets import Dataset, InvalidDataset, load_dataset
from vidpipe.configstore import ClientConfig
from vidpipe.events import Detection
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings

log = logging.getLogger(__name__)

EXPERIMENT = "accuracy-reports"
#: Lowest detection score kept: all the model returns (CenterNet's own floor is 0.05).
SCORE_FLOOR = 0.05
BATCH_SIZE = 8
_MODEL_REF = re.compile(r"^(?P<name>[^@/\s]+)(?:@(?P<alias>[^@/\s]+)|/(?P<version>[^@/\s]+))$")
_CLIENT_ID = "accuracy-evaluator"  # ModelCache resolves from a ClientConfig; no real client


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


class AccuracyResult(BaseModel):
    """One accuracy evaluation, as stored in ``accuracy_reports``."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    dataset: str
    model_name: str
    model_version: str
    map: float
    map_50: float
    map_75: float
    per_class_ap: dict[str, float]
    images: int
    mlflow_run_id: str | None


def parse_model_ref(model: str) -> tuple[str, str | None, str | None]:
    """``"NAME@ALIAS"`` -> ``(NAME, ALIAS, None)``; ``"NAME/VERSION"`` -> ``(NAME, None, VERSION)``.

    Raises ``ValueError`` for anything else.
    """
    match = _MODEL_REF.match(model)
    if match is None:
        raise ValueError(f"{model!r}: expected NAME@ALIAS or NAME/VERSION")
    return match["name"], match["alias"], match["version"]


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


def run_detector(
    model: LoadedModel, dataset: Dataset, device: torch.device, batch_size: int = BATCH_SIZE
) -> list[dict[str, Any]]:
    """COCO result entries for every image of ``dataset`` (see :func:`detections_to_coco`).

    Raises ``services.detector.inference.UndecodableImage`` for an image that is not a
    decodable JPEG/PNG and :class:`InvalidDataset` for a missing one.
    """
    category_ids = {str(c["name"]): int(c["id"]) for c in dataset.categories}
    unknown = sorted(set(category_ids) - set(model.labels))
    if unknown:
        log.warning(
            "model cannot detect dataset classes; their AP will be 0", extra={"classes": unknown}
        )
    images = dataset.images
    results: list[dict[str, Any]] = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        frames = [decode_frame(dataset.image_bytes(image)) for image in batch]
        for image, found in zip(batch, detect_batch(model, frames, device), strict=True):
            results.extend(detections_to_coco(int(image["id"]), found, category_ids))
    return results


def evaluate_accuracy(settings: ServiceSettings, dataset: str, model: str) -> AccuracyResult:
    """Evaluate a registered model on a stored dataset, record it, and return the result.

    Args:
        dataset: dataset name in bucket ``datasets`` (e.g. ``vtest-persons``).
        model: ``NAME@ALIAS`` or ``NAME/VERSION`` in the MLflow registry.
    Raises:
        ValueError: ``model`` is not in either form.
        services.evaluator.datasets.DatasetNotFound: no such dataset (lists the existing ones).
        services.evaluator.datasets.InvalidDataset: malformed, or no images / no boxes.
        services.detector.model_cache.ModelUnavailable: the model cannot be resolved or loaded.
    """
    name, alias, version = parse_model_ref(model)
    data = load_dataset(ObjectStore(settings.s3), dataset)
    if not data.images or not any(not a.get("iscrowd", 0) for a in data.annotations):
        raise InvalidDataset(
            f"dataset {dataset!r} has {len(data.images)} images and "
            f"{len(data.annotations)} annotations: nothing to measure mAP against"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cache = ModelCache(settings.mlflow.tracking_uri, device)
    config = ClientConfig(
        client_id=_CLIENT_ID, model_name=name, model_alias=alias, model_version=version
    )
    loaded = cache.get(cache.resolve(config))
    started = time.perf_counter()
    detections = run_detector(loaded, data, device)
    inference_s = time.perf_counter() - started
    metrics = coco_metrics(data.coco, detections)
    eval_s = time.perf_counter() - started
    log.info(
        "accuracy evaluated",
        extra={
            "dataset": dataset,
            "model": f"{loaded.ref.name}/{loaded.ref.version}",
            "images": len(data.images),
            "map": round(metrics.map, 4),
            "map_50": round(metrics.map_50, 4),
            "eval_s": round(eval_s, 2),
        },
    )
    run_id = log_mlflow_run(
        settings.mlflow.tracking_uri,
        dataset=dataset,
        model=model,
        ref=(loaded.ref.name, loaded.ref.version),
        metrics=metrics,
        timings={"inference_s": inference_s, "eval_s": eval_s},
        images=len(data.images),
    )
    result = AccuracyResult(
        dataset=dataset,
        model_name=loaded.ref.name,
        model_version=loaded.ref.version,
        map=metrics.map,
        map_50=metrics.map_50,
        map_75=metrics.map_75,
        per_class_ap=metrics.per_class_ap,
        images=len(data.images),
        mlflow_run_id=run_id,
    )
    store_result(settings.postgres.dsn.get_secret_value(), result)
    return result


def log_mlflow_run(
    tracking_uri: str,
    *,
    dataset: str,
    model: str,
    ref: tuple[str, str],
    metrics: CocoMetrics,
    timings: Mapping[str, float],
    images: int,
) -> str:
    """One finished run in experiment ``accuracy-reports``; returns its id.

    Metrics ``map``, ``map_50``, ``map_75``, ``ap_<class>`` (AP@[.5:.95]) and
    ``ap50_<class>``, plus timings in seconds; params ``dataset`` and ``model`` (as asked);
    tags ``model_name``/``model_version``. The model version gets tags
    ``accuracy.<dataset>.map`` / ``.map_50`` / ``.run_id`` so the registry shows its score.
    """
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    name, version = ref
    run = client.create_run(
        experiment_id,
        run_name=f"{dataset}:{name}/{version}",
        tags={"model_name": name, "model_version": version, "dataset": dataset},
    )
    run_id: str = run.info.run_id
    now = int(time.time() * 1000)
    values = {"map": metrics.map, "map_50": metrics.map_50, "map_75": metrics.map_75}
    values |= {f"ap_{_metric_key(c)}": ap for c, ap in metrics.per_class_ap.items()}
    values |= {f"ap50_{_metric_key(c)}": ap for c, ap in metrics.per_class_ap_50.items()}
    values |= dict(timings) | {"images": float(images)}
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in values.items()],
        params=[
            Param("dataset", dataset),
            Param("model", model),
            Param("model_uri", f"models:/{name}/{version}"),
            Param("score_floor", str(SCORE_FLOOR)),
            Param("metric_source", "pycocotools COCOeval bbox, area all, maxDets 100"),
        ],
        tags=[RunTag("mlflow.note.content", f"COCO mAP of models:/{name}/{version} on {dataset}")],
    )
    client.set_terminated(run_id)
    prefix = f"accuracy.{dataset}"
    client.set_model_version_tag(name, version, f"{prefix}.map", f"{metrics.map:.4f}")
    client.set_model_version_tag(name, version, f"{prefix}.map_50", f"{metrics.map_50:.4f}")
    client.set_model_version_tag(name, version, f"{prefix}.run_id", run_id)
    return run_id


def store_result(dsn: str, result: AccuracyResult) -> int:
    """Insert ``result`` into ``accuracy_reports`` (migration 0002); returns the row id."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "INSERT INTO accuracy_reports (dataset, model_name, model_version, map, map_50,"
            " map_75, per_class_ap, images, mlflow_run_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                result.dataset,
                result.model_name,
                result.model_version,
                result.map,
                result.map_50,
                result.map_75,
                Jsonb(result.per_class_ap),
                result.images,
                result.mlflow_run_id,
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


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


def _metric_key(label: str) -> str:
    return re.sub(r"[^\w.\-/]", "_", label)
