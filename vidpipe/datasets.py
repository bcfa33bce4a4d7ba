"""Labelled datasets in object storage (COCO JSON plus images): names, ownership, storage.

Names: ``name`` is a shared reference set any client may train and evaluate on (e.g.
``vtest-persons``); ``client/name`` belongs to that client (e.g. built from its cameras).

Layout in bucket ``datasets`` (:data:`vidpipe.topics.DATASETS_BUCKET`)::

    <name>/annotations.json        COCO detection format (images, annotations, categories)
    <name>/images/<file_name>      one object per COCO image, named by its ``file_name``

COCO conventions hold throughout: ``bbox`` is ``[x, y, width, height]`` in pixels of the
image, top-left origin (the detector's boxes are xyxy; :mod:`vidpipe_ml.coco` converts),
``iscrowd: 1`` marks an ignore region. ``annotations.json`` is written last, so a dataset is
listed only once all of its images are in place.

``vtest-persons`` is the project's own hand-labelled set (``datasets/vtest-persons/`` in the
repository: annotations and how they were made); its images are frames of ``vtest.avi``,
extracted by :func:`ensure_vtest_persons` at set-up rather than kept in git.

CLI: ``vidpipe datasets list|build|import|ensure-vtest-persons``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from vidpipe.ids import ID_PATTERN
from vidpipe.objectstore import ObjectNotFound
from vidpipe.topics import DATASETS_BUCKET

log = logging.getLogger(__name__)

ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"
VTEST_PERSONS = "vtest-persons"
#: ``datasets/vtest-persons/annotations.json`` in the repository (editable install).
VTEST_PERSONS_ANNOTATIONS = (
    Path(__file__).resolve().parents[1] / "datasets" / VTEST_PERSONS / ANNOTATIONS_FILE
)
#: Image field holding the 0-based index of the labelled frame in ``vtest.avi``.
FRAME_INDEX_FIELD = "vidpipe_frame_index"
JPEG_QUALITY = 95

#: Dataset names: ``name`` (shared) or ``client/name`` (that client's).
DATASET_NAME = re.compile(
    r"^(?:(?P<client>" + ID_PATTERN.strip("^$") + r")/)?[a-z0-9][a-z0-9._-]{0,127}$"
)
DATASET_NAME_RULE = (
    "'name' (shared) or 'client/name' (one client's): name is 1-128 lowercase letters, "
    "digits, '.', '_', '-'"
)
#: A dataset name, or the key of its COCO file (``acme/dock/annotations.json``), as APIs take it.
DATASET_REFERENCE_PATTERN = DATASET_NAME.pattern.removesuffix("$") + r"(/annotations\.json)?$"


def dataset_owner(name: str) -> str | None:
    """The client owning dataset ``name`` (``None``: a shared set).

    Raises:
        ValueError: ``name`` breaks :data:`DATASET_NAME_RULE`.
    """
    match = DATASET_NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"dataset name {name!r} is invalid: {DATASET_NAME_RULE}")
    return match["client"]


def dataset_usable_by(name: str, client_id: str) -> bool:
    """Whether ``client_id`` may train or evaluate on dataset ``name`` (shared or its own).

    Raises:
        ValueError: ``name`` breaks :data:`DATASET_NAME_RULE`.
    """
    return dataset_owner(name) in (None, client_id)


def dataset_name(reference: str) -> str:
    """A dataset name as the bucket spells it: ``acme/set/annotations.json`` (the key of its
    COCO file) and ``acme/set/`` both become ``acme/set``."""
    return reference.removesuffix("/" + ANNOTATIONS_FILE).rstrip("/")


class DatasetNotFound(LookupError):
    """No ``<name>/annotations.json`` in the datasets bucket; the message lists what exists."""

    def __init__(self, name: str, available: list[str]) -> None:
        listed = ", ".join(available) if available else "none"
        super().__init__(
            f"dataset {name!r} not found in bucket {DATASETS_BUCKET!r}; available: {listed}"
        )
        self.name = name
        self.available = available


class InvalidDataset(ValueError):
    """The dataset is not usable COCO (missing keys, dangling ids, missing images, empty)."""


class DatasetStore(Protocol):
    """What datasets need from :class:`vidpipe.objectstore.ObjectStore`."""

    def get(self, bucket: str, key: str) -> bytes: ...

    def exists(self, bucket: str, key: str) -> bool: ...

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...

    def iter_keys(self, bucket: str, prefix: str = "") -> Iterator[str]: ...

    def ensure_bucket(self, bucket: str) -> None: ...


@dataclass(frozen=True)
class Dataset:
    """A parsed COCO dataset and access to its image bytes.

    ``coco`` is the ``annotations.json`` dict as stored (boxes COCO xywh pixels).
    """

    name: str
    coco: dict[str, Any]
    store: DatasetStore

    @property
    def images(self) -> list[dict[str, Any]]:
        return list(self.coco["images"])

    @property
    def annotations(self) -> list[dict[str, Any]]:
        return list(self.coco["annotations"])

    @property
    def categories(self) -> list[dict[str, Any]]:
        return list(self.coco["categories"])

    def image_bytes(self, image: Mapping[str, Any]) -> bytes:
        """The stored file of one COCO image entry. Raises :class:`InvalidDataset` if absent."""
        key = image_key(self.name, str(image["file_name"]))
        try:
            return self.store.get(DATASETS_BUCKET, key)
        except ObjectNotFound as exc:
            raise InvalidDataset(
                f"dataset {self.name!r}: image s3://{DATASETS_BUCKET}/{key} is missing"
            ) from exc


def annotations_key(name: str) -> str:
    return f"{name}/{ANNOTATIONS_FILE}"


def image_key(name: str, file_name: str) -> str:
    return f"{name}/{IMAGES_DIR}/{file_name}"


def dataset_exists(store: DatasetStore, name: str) -> bool:
    """Whether dataset ``name`` is complete in the store (its ``annotations.json`` exists)."""
    return store.exists(DATASETS_BUCKET, annotations_key(name))


class StoredDatasets:
    """:class:`vidpipe.jobs.DatasetLookup` over a store."""

    def __init__(self, store: DatasetStore) -> None:
        self._store = store

    def exists(self, name: str) -> bool:
        return dataset_exists(self._store, name)

    def names(self) -> list[str]:
        return list_datasets(self._store)

    def image_count(self, name: str) -> int:
        """Images of dataset ``name``. Raises what :func:`load_dataset` raises."""
        return len(load_dataset(self._store, name).images)


def list_datasets(store: DatasetStore) -> list[str]:
    """Names of complete datasets (those with an ``annotations.json``), sorted: shared
    ``name`` and clients' ``client/name`` (see :data:`vidpipe.topics.DATASET_NAME`)."""
    suffix = f"/{ANNOTATIONS_FILE}"
    names = (
        key[: -len(suffix)] for key in store.iter_keys(DATASETS_BUCKET) if key.endswith(suffix)
    )
    return sorted(
        name
        for name in names
        if DATASET_NAME.fullmatch(name) and not name.endswith(f"/{IMAGES_DIR}")
    )


def load_dataset(store: DatasetStore, name: str) -> Dataset:
    """Read and check ``<name>/annotations.json``; images are fetched lazily.

    Raises:
        DatasetNotFound: no such dataset (message lists the available ones).
        InvalidDataset: the JSON is not COCO detection data (see :func:`check_coco`).
    """
    try:
        raw = store.get(DATASETS_BUCKET, annotations_key(name))
    except ObjectNotFound:
        raise DatasetNotFound(name, list_datasets(store)) from None
    try:
        coco = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidDataset(f"dataset {name!r}: {ANNOTATIONS_FILE} is not JSON ({exc})") from exc
    check_coco(coco, name)
    return Dataset(name=name, coco=coco, store=store)


def upload_dataset(
    store: DatasetStore, name: str, annotations: dict[str, Any], images: Mapping[str, bytes]
) -> None:
    """Store a COCO dataset: every image under ``<name>/images/``, then the annotations.

    ``images`` maps COCO ``file_name`` to the encoded file (JPEG or PNG). Re-uploading
    overwrites (keys are derived from the names). Raises :class:`InvalidDataset` for a bad
    name, malformed COCO, or an image entry without bytes.
    """
    if not DATASET_NAME.fullmatch(name):
        raise InvalidDataset(f"dataset name {name!r} is invalid: {DATASET_NAME_RULE}")
    check_coco(annotations, name)
    missing = sorted({str(i["file_name"]) for i in annotations["images"]} - set(images))
    if missing:
        raise InvalidDataset(f"dataset {name!r}: no bytes for images {missing[:5]}")
    store.ensure_bucket(DATASETS_BUCKET)
    for file_name, data in images.items():
        store.put(DATASETS_BUCKET, image_key(name, file_name), data, _content_type(file_name))
    body = json.dumps(annotations).encode()
    store.put(DATASETS_BUCKET, annotations_key(name), body, "application/json")
    log.info(
        "dataset uploaded",
        extra={
            "dataset": name,
            "images": len(images),
            "annotations": len(annotations["annotations"]),
        },
    )


def check_coco(coco: Any, name: str) -> None:
    """Structural checks a COCO detection file must pass before we rely on it.

    Raises :class:`InvalidDataset` when ``images``/``annotations``/``categories`` are
    missing, ids are duplicated or dangling, or a ``bbox`` is not ``[x, y, w, h]`` with
    ``w, h > 0``. Empty lists are allowed here (the evaluator rejects them).
    """
    if not isinstance(coco, dict):
        raise InvalidDataset(f"dataset {name!r}: annotations must be a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise InvalidDataset(f"dataset {name!r}: {key!r} must be a list")
    image_ids = [i.get("id") for i in coco["images"]]
    category_ids = [c.get("id") for c in coco["categories"]]
    if len(set(image_ids)) != len(image_ids) or len(set(category_ids)) != len(category_ids):
        raise InvalidDataset(f"dataset {name!r}: duplicate image or category ids")
    if any("file_name" not in i for i in coco["images"]):
        raise InvalidDataset(f"dataset {name!r}: every image needs a file_name")
    known_images, known_categories = set(image_ids), set(category_ids)
    for ann in coco["annotations"]:
        bbox = ann.get("bbox")
        if (
            ann.get("image_id") not in known_images
            or ann.get("category_id") not in known_categories
        ):
            raise InvalidDataset(
                f"dataset {name!r}: annotation {ann.get('id')} has unknown image/category"
            )
        if not (isinstance(bbox, list) and len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0):
            raise InvalidDataset(
                f"dataset {name!r}: annotation {ann.get('id')} bbox {bbox} is not xywh"
            )


def ensure_vtest_persons(
    store: DatasetStore,
    vtest_avi: Path,
    annotations_path: Path = VTEST_PERSONS_ANNOTATIONS,
    name: str = VTEST_PERSONS,
) -> None:
    """Make sure dataset ``vtest-persons`` is in the store, extracting its frames if needed.

    Each COCO image names its frame by ``vidpipe_frame_index`` (0-based, in decode order of
    ``vtest.avi`` as OpenCV reads it); frames are read sequentially (seeking in this
    MS-MPEG4 file is not frame-exact), JPEG-encoded at quality 95 and uploaded with the
    annotations. Skipped when the stored annotations equal the repository's and every
    image is present.

    Raises:
        FileNotFoundError: ``vtest_avi`` or ``annotations_path`` does not exist.
        InvalidDataset: a frame index is past the end of the video or its size differs.
    """
    coco = json.loads(annotations_path.read_text())
    if _already_uploaded(store, name, coco):
        log.info("dataset already present", extra={"dataset": name, "images": len(coco["images"])})
        return
    if not vtest_avi.is_file():
        raise FileNotFoundError(f"{vtest_avi}: vtest.avi not found")
    wanted = {int(image[FRAME_INDEX_FIELD]): image for image in coco["images"]}
    images: dict[str, bytes] = {}
    found: set[int] = set()
    for index, frame in _read_frames(vtest_avi, set(wanted)):
        image = wanted[index]
        if frame.shape[:2] != (image["height"], image["width"]):
            raise InvalidDataset(f"{vtest_avi} frame {index} is {frame.shape[1]}x{frame.shape[0]}")
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise InvalidDataset(f"{vtest_avi} frame {index}: JPEG encoding failed")
        images[str(image["file_name"])] = jpeg.tobytes()
        found.add(index)
    missing = sorted(set(wanted) - found)
    if missing:
        raise InvalidDataset(
            f"{vtest_avi} has no frames {missing} (labelled in {annotations_path})"
        )
    upload_dataset(store, name, coco, images)


def _already_uploaded(store: DatasetStore, name: str, coco: dict[str, Any]) -> bool:
    try:
        stored = json.loads(store.get(DATASETS_BUCKET, annotations_key(name)))
    except (ObjectNotFound, json.JSONDecodeError):
        return False
    present = set(store.iter_keys(DATASETS_BUCKET, f"{name}/{IMAGES_DIR}/"))
    expected = {image_key(name, str(i["file_name"])) for i in coco["images"]}
    return bool(stored == coco and expected <= present)


def _read_frames(video: Path, indices: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, BGR frame)`` for the wanted 0-based indices, reading sequentially."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise InvalidDataset(f"{video}: OpenCV cannot open it")
    try:
        last = max(indices, default=-1)
        for index in range(last + 1):
            ok, frame = capture.read()
            if not ok:
                return
            if index in indices:
                yield index, frame
    finally:
        capture.release()


def _content_type(file_name: str) -> str:
    return "image/png" if file_name.lower().endswith(".png") else "image/jpeg"
