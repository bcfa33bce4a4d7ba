"""Kafka topic and S3 bucket names: the only place they are spelled out.

A breaking change to an event is a new topic version (``frames.decoded.v2``), never an
in-place edit. Every consumed topic has a dead-letter twin ``<topic>.dlq``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FRAMES_DECODED = "frames.decoded.v1"
DETECTIONS = "detections.v1"
METRICS = "metrics.v1"
TRAINING_JOBS = "training.jobs.v1"


def dead_letter_topic(topic: str) -> str:
    """``frames.decoded.v1`` -> ``frames.decoded.v1.dlq``."""
    return f"{topic}.dlq"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


#: Topics ``vidpipe up`` creates. Frames are keyed by camera_id, so a camera's frames stay
#: ordered within one partition while cameras spread over detector replicas.
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(FRAMES_DECODED, 4),
    TopicSpec(dead_letter_topic(FRAMES_DECODED), 1),
    TopicSpec(DETECTIONS, 4),
    TopicSpec(dead_letter_topic(DETECTIONS), 1),
    TopicSpec(METRICS, 2),
    TopicSpec(dead_letter_topic(METRICS), 1),
    TopicSpec(TRAINING_JOBS, 1),
)

FRAMES_BUCKET = "frames"
ANNOTATIONS_BUCKET = "annotations"
RENDERS_BUCKET = "renders"
DATASETS_BUCKET = "datasets"
MLFLOW_BUCKET = "mlflow"
#: Durable storage of the local Kafka-API broker (Tansu) lives in the S3 server too.
BROKER_BUCKET = "tansu"

#: Dataset names in :data:`DATASETS_BUCKET` (the dataset lives under ``<name>/``):
#: ``name`` is a shared reference set any client may train and evaluate on (e.g.
#: ``vtest-persons``); ``client/name`` belongs to that client (e.g. built from its cameras).
DATASET_NAME = re.compile(
    r"^(?:(?P<client>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})/)?[a-z0-9][a-z0-9._-]{0,127}$"
)
DATASET_NAME_RULE = (
    "'name' (shared) or 'client/name' (one client's): name is 1-128 lowercase letters, "
    "digits, '.', '_', '-'"
)


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


BUCKETS: tuple[str, ...] = (
    FRAMES_BUCKET,
    ANNOTATIONS_BUCKET,
    RENDERS_BUCKET,
    DATASETS_BUCKET,
    MLFLOW_BUCKET,
    BROKER_BUCKET,
)
