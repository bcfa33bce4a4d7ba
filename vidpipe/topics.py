"""Kafka topic and S3 bucket names: the only place they are spelled out.

A breaking change to an event is a new topic version, never an in-place edit: the frame
topics are at v2 since frames carry their stream session. Every consumed topic has a
dead-letter twin ``<topic>.dlq``.
"""

from __future__ import annotations

from dataclasses import dataclass

FRAMES_DECODED = "frames.decoded.v2"
DETECTIONS = "detections.v2"
METRICS = "metrics.v2"
TRAINING_JOBS = "training.jobs.v1"
#: On-demand detection requests (key = request id) and their completions (key = request id).
REQUESTS = "requests.v1"
REQUESTS_DONE = "requests.done.v1"
#: Camera lifecycle events (key = ``client/camera``); agents form one consumer group on it and
#: own the cameras of the partitions Kafka assigns them.
CAMERAS_CONTROL = "cameras.control.v1"
#: Agents' heartbeats every 5 s (key = agent id), read by the status sink.
AGENTS_STATUS = "agents.status.v1"


def dead_letter_topic(topic: str) -> str:
    """``frames.decoded.v2`` -> ``frames.decoded.v2.dlq``."""
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
    # Requests have their own topic, so none waits behind a camera's backlog in a partition
    # (see services/detector/requests.py for how the detector gives them priority).
    TopicSpec(REQUESTS, 2),
    TopicSpec(dead_letter_topic(REQUESTS), 1),
    TopicSpec(REQUESTS_DONE, 2),
    TopicSpec(dead_letter_topic(REQUESTS_DONE), 1),
    # Partitions bound how many agents share the cameras (one owner per partition).
    TopicSpec(CAMERAS_CONTROL, 12),
    TopicSpec(dead_letter_topic(CAMERAS_CONTROL), 1),
    TopicSpec(AGENTS_STATUS, 1),
    TopicSpec(dead_letter_topic(AGENTS_STATUS), 1),
)

FRAMES_BUCKET = "frames"
ANNOTATIONS_BUCKET = "annotations"
RENDERS_BUCKET = "renders"
DATASETS_BUCKET = "datasets"
MLFLOW_BUCKET = "mlflow"
#: Uploaded images of on-demand requests, their annotations and renders (``{client}/...``).
REQUESTS_BUCKET = "requests"
#: Durable storage of the local Kafka-API broker (Tansu) lives in the S3 server too.
BROKER_BUCKET = "tansu"

BUCKETS: tuple[str, ...] = (
    FRAMES_BUCKET,
    ANNOTATIONS_BUCKET,
    RENDERS_BUCKET,
    DATASETS_BUCKET,
    MLFLOW_BUCKET,
    BROKER_BUCKET,
    REQUESTS_BUCKET,
)
