"""Build COCO datasets for the trainer/evaluator: pseudo-labels from a camera, or a local folder.

:func:`build_from_camera` turns what the detector already stored for one camera into a
pseudo-labelled dataset (the teacher is the production model whose detections are in
the annotations bucket, :mod:`vidpipe.keys`); :func:`import_folder` uploads a COCO
dataset from disk. Both end in :func:`vidpipe.datasets.upload_dataset`, so the layout is the
one described in :mod:`vidpipe.datasets`.

Coordinates: the detector's boxes are ``[x1, y1, x2, y2]`` in pixels of the frame (top-left
origin); COCO ``bbox`` is ``[x, y, width, height]`` in the same pixels. Boxes are clipped to
the image and those left with zero width or height are dropped.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from vidpipe import keys
from vidpipe.datasets import (
    ANNOTATIONS_FILE,
    IMAGES_DIR,
    DatasetStore,
    InvalidDataset,
    check_coco,
    dataset_owner,
    list_datasets,
    upload_dataset,
)
from vidpipe.objectstore import ObjectNotFound
from vidpipe.topics import ANNOTATIONS_BUCKET

log = logging.getLogger(__name__)

FETCH_WORKERS = 16
_PROGRESS_EVERY = 100
T = TypeVar("T")
R = TypeVar("R")


class DatasetExists(InvalidDataset):
    """A dataset of that name is already stored and ``overwrite`` was not given."""


@dataclass(frozen=True)
class BuildSummary:
    """What was uploaded: image count (negatives included), boxes per label, teachers."""

    name: str
    images: int
    negatives: int
    boxes_by_label: dict[str, int]
    teachers: list[str] = field(default_factory=list)

    @property
    def boxes(self) -> int:
        return sum(self.boxes_by_label.values())


def xyxy_to_xywh(box: Iterable[float], width: int, height: int) -> list[float] | None:
    """``[x1, y1, x2, y2]`` px -> COCO ``[x, y, w, h]`` px, clipped to ``width`` x ``height``.

    Returns ``None`` when nothing of the box is left inside the image (w or h <= 0).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = max(0.0, min(x1, x2)), min(float(width), max(x1, x2))
    y1, y2 = max(0.0, min(y1, y2)), min(float(height), max(y1, y2))
    w, h = round(x2 - x1, 2), round(y2 - y1, 2)
    if w <= 0 or h <= 0:
        return None
    return [round(x1, 2), round(y1, 2), w, h]


def build_from_camera(
    store: DatasetStore,
    client_id: str,
    camera_id: str,
    name: str,
    since_ns: int | None,
    min_score: float,
    labels: set[str] | None = None,
    max_frames: int | None = None,
    overwrite: bool = False,
) -> BuildSummary:
    """Upload dataset ``name`` from the camera's stored detections (pseudo-labels).

    ``name`` must be ``client_id/...`` (:func:`vidpipe.datasets.dataset_owner`): a client's
    footage never becomes a shared dataset.

    Frames are those whose ``capture_ts_ns`` (ns since the epoch) is ``>= since_ns`` (all
    when ``None``), in capture order, the first ``max_frames`` of them. Detections
    with ``score >= min_score`` and, if ``labels`` is given, a label in it become COCO
    annotations (``iscrowd`` 0, ``area`` = w*h px²); category ids are 1..K by sorted label
    name. A frame with no kept detection is still included, as a negative (an image with no
    annotations: "nothing of interest here" per the teacher). Images are the frame JPEGs
    (``image.bucket``/``image.key`` of each annotation), named ``{session_id}-{frame_seq}.jpg``
    (frames of several stream sessions never collide).

    Raises:
        DatasetExists: ``name`` is already stored and ``overwrite`` is false.
        InvalidDataset: no annotations for that camera/window, a bad name or one not owned
            by ``client_id``, a frame JPEG or annotation JSON missing or unreadable.
    """
    try:
        owner = dataset_owner(name)
    except ValueError as exc:
        raise InvalidDataset(str(exc)) from exc
    if owner != client_id:
        raise InvalidDataset(
            f"dataset {name!r} is built from client {client_id!r}'s cameras, so it must be "
            f"named '{client_id}/<name>'"
        )
    if not overwrite and name in list_datasets(store):
        raise DatasetExists(f"dataset {name!r} already exists; pass overwrite=True to replace it")
    prefix = keys.camera_prefix(client_id, camera_id)
    found = [
        k
        for k in store.iter_keys(ANNOTATIONS_BUCKET, prefix)
        if (session := keys.parse_session(k, client_id, camera_id)) is not None
        and keys.parse_seq(k, keys.session_prefix(client_id, camera_id, session), ".json")
        is not None
    ]
    window = "all time" if since_ns is None else f"capture_ts_ns >= {since_ns} ({_iso(since_ns)})"
    log.info("reading annotations", extra={"camera": prefix, "objects": len(found)})
    docs = _fetch_all(found, lambda k: _read_json(store, ANNOTATIONS_BUCKET, k), "annotations")
    frames = sorted(
        (d for d in docs if since_ns is None or int(d["capture_ts_ns"]) >= since_ns),
        key=lambda d: (int(d["capture_ts_ns"]), int(d["frame_seq"])),
    )[:max_frames]
    if not frames:
        raise InvalidDataset(
            f"no annotations for camera {camera_id!r} of client {client_id!r} in "
            f"s3://{ANNOTATIONS_BUCKET}/{prefix} for {window} ({len(found)} objects in total)"
        )
    coco = _coco_from_frames(frames, min_score, labels)
    coco["info"] = {
        "description": f"pseudo-labels from camera {client_id}/{camera_id}",
        "source": {"client_id": client_id, "camera_id": camera_id},
        "teachers": sorted({_teacher(d) for d in frames}),
        "min_score": min_score,
        "labels": sorted(labels) if labels else None,
        "since": None if since_ns is None else _iso(since_ns),
        "since_ns": since_ns,
        "date_created": datetime.now(UTC).isoformat(),
    }
    check_coco(coco, name)
    if not coco["annotations"]:
        log.warning(
            "no detection passed the filters; every image is a negative",
            extra={"dataset": name, "min_score": min_score, "images": len(frames)},
        )
    jpegs = _fetch_all(frames, lambda d: _read_frame(store, d), "frames")
    images = {_file_name(d): data for d, data in zip(frames, jpegs, strict=True)}
    upload_dataset(store, name, coco, images)
    return _summary(name, coco, coco["info"]["teachers"])


def import_folder(
    store: DatasetStore, folder: Path, name: str, overwrite: bool = False
) -> BuildSummary:
    """Upload a local COCO dataset: ``folder/annotations.json`` plus the files its images name.

    Each ``file_name`` is looked up relative to ``folder``, then to ``folder/images/``.

    Raises:
        FileNotFoundError: no ``annotations.json`` in ``folder``.
        DatasetExists: ``name`` is already stored and ``overwrite`` is false.
        InvalidDataset: not JSON, fails :func:`check_coco`, or an image file is missing.
    """
    path = folder / ANNOTATIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no COCO annotations file")
    try:
        coco = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidDataset(f"{path} is not JSON ({exc})") from exc
    check_coco(coco, name)
    if not overwrite and name in list_datasets(store):
        raise DatasetExists(f"dataset {name!r} already exists; pass overwrite=True to replace it")
    images: dict[str, bytes] = {}
    missing: list[str] = []
    for image in coco["images"]:
        file_name = str(image["file_name"])
        found = next(
            (p for p in (folder / file_name, folder / IMAGES_DIR / file_name) if p.is_file()), None
        )
        if found is None:
            missing.append(file_name)
        else:
            images[file_name] = found.read_bytes()
    if missing:
        raise InvalidDataset(
            f"{path}: {len(missing)} image file(s) not found in {folder} or "
            f"{folder / IMAGES_DIR}: {missing[:5]}"
        )
    upload_dataset(store, name, coco, images)
    return _summary(name, coco, [])


def _file_name(doc: dict[str, Any]) -> str:
    """``{session_id}-{frame_seq}.jpg`` of an annotation document."""
    return f"{doc['session_id']}-{int(doc['frame_seq'])}.jpg"


def _coco_from_frames(
    frames: list[dict[str, Any]], min_score: float, labels: set[str] | None
) -> dict[str, Any]:
    """COCO images/annotations/categories for annotation documents (see the module doc)."""
    kept: list[tuple[int, dict[str, Any], list[float]]] = []
    images: list[dict[str, Any]] = []
    for image_id, doc in enumerate(frames, start=1):
        width, height = int(doc["width"]), int(doc["height"])
        images.append(
            {
                "id": image_id,
                "file_name": _file_name(doc),
                "width": width,
                "height": height,
                "frame_seq": int(doc["frame_seq"]),
                "capture_ts_ns": int(doc["capture_ts_ns"]),
            }
        )
        for det in doc.get("detections", []):
            if float(det["score"]) < min_score or (labels and det["label"] not in labels):
                continue
            bbox = xyxy_to_xywh(det["box"], width, height)
            if bbox is not None:
                kept.append((image_id, det, bbox))
    category_ids = {label: i for i, label in enumerate(sorted({d["label"] for _, d, _ in kept}), 1)}
    annotations = [
        {
            "id": ann_id,
            "image_id": image_id,
            "category_id": category_ids[det["label"]],
            "bbox": bbox,
            "area": round(bbox[2] * bbox[3], 2),
            "iscrowd": 0,
            "score": float(det["score"]),
        }
        for ann_id, (image_id, det, bbox) in enumerate(kept, start=1)
    ]
    categories = [{"id": i, "name": label} for label, i in category_ids.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


def _summary(name: str, coco: dict[str, Any], teachers: list[str]) -> BuildSummary:
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    boxes = Counter(names[a["category_id"]] for a in coco["annotations"])
    annotated = {a["image_id"] for a in coco["annotations"]}
    negatives = sum(1 for i in coco["images"] if i["id"] not in annotated)
    return BuildSummary(name, len(coco["images"]), negatives, dict(sorted(boxes.items())), teachers)


def _fetch_all(items: list[T], fetch: Callable[[T], R], what: str) -> list[R]:
    """``fetch`` over ``items`` on :data:`FETCH_WORKERS` threads, in order, logging progress."""
    results: list[R] = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=FETCH_WORKERS) as pool:
        for done, result in enumerate(pool.map(fetch, items), start=1):
            results.append(result)
            if done % _PROGRESS_EVERY == 0 or done == len(items):
                log.info(
                    f"fetched {done}/{len(items)} {what}",
                    extra={"elapsed_s": round(time.monotonic() - started, 1)},
                )
    return results


def _read_json(store: DatasetStore, bucket: str, key: str) -> dict[str, Any]:
    try:
        doc = json.loads(store.get(bucket, key))
    except (ObjectNotFound, json.JSONDecodeError) as exc:
        raise InvalidDataset(f"s3://{bucket}/{key}: unreadable annotation ({exc})") from exc
    if not isinstance(doc, dict):
        raise InvalidDataset(f"s3://{bucket}/{key}: annotation is not a JSON object")
    return doc


def _read_frame(store: DatasetStore, doc: dict[str, Any]) -> bytes:
    bucket, key = doc["image"]["bucket"], doc["image"]["key"]
    try:
        return store.get(bucket, key)
    except ObjectNotFound as exc:
        raise InvalidDataset(f"frame {doc.get('frame_id')}: s3://{bucket}/{key} missing") from exc


def _teacher(doc: dict[str, Any]) -> str:
    model = doc.get("model") or {}
    return f"{model.get('name', '?')}@{model.get('version', '?')}"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()
