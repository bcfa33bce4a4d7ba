"""Versioned events carried by Kafka: one frozen pydantic model per topic.

Claim check: events carry references to bytes in object storage (:class:`ObjectRef`), never
the bytes. Every event is validated where it enters a service (:func:`parse_event`); unknown
fields and wrong types are rejected, so a producer bug surfaces as a dead letter with a
readable reason instead of a crash further down.

Time: all ``*_ts_ns`` fields are integer nanoseconds since the Unix epoch (``time.time_ns()``).
Boxes: ``xyxy`` in pixels of the full decoded frame, origin top-left, x right, y down.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vidpipe.ids import ID_PATTERN, REQUEST_ID_PATTERN

Id = str


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ObjectRef(_Frozen):
    """Where bytes live in S3-compatible storage."""

    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)


class ModelRef(_Frozen):
    """A resolved registry model version, e.g. ``coco-centernet`` version ``3``."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)


class FrameRef(_Frozen):
    """Identity of one frame: the idempotence key of every effect derived from it.

    ``session_id`` names one run of the camera's decoder (:mod:`vidpipe.sessions`): every
    decoder start opens a new session and numbers its frames from 0, so (camera, session,
    seq) is unique and a restart never overwrites or merges an earlier run's frames.
    """

    client_id: Id = Field(pattern=ID_PATTERN)
    camera_id: Id = Field(pattern=ID_PATTERN)
    session_id: Id = Field(pattern=ID_PATTERN)
    frame_seq: int = Field(ge=0, description="index of the frame in its session's stream")

    @property
    def frame_id(self) -> str:
        """``client/camera/session/seq``: unique per frame, stable across replays."""
        return f"{self.client_id}/{self.camera_id}/{self.session_id}/{self.frame_seq}"


class FrameDecoded(FrameRef):
    """A decoded frame stored as JPEG. Topic ``frames.decoded.v2``, key = camera_id."""

    schema_version: Literal[2] = 2
    capture_ts_ns: int = Field(gt=0)
    decoded_ts_ns: int = Field(gt=0)
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)
    image: ObjectRef


class Detection(_Frozen):
    """One detected object. ``box`` is xyxy in pixels of the frame; ``score`` in [0, 1]."""

    box: tuple[float, float, float, float]
    score: float = Field(ge=0.0, le=1.0)
    label: str = Field(min_length=1)

    @model_validator(mode="after")
    def _box_is_ordered(self) -> Detection:
        x1, y1, x2, y2 = self.box
        if not (x2 >= x1 and y2 >= y1):
            raise ValueError(f"box must be xyxy with x2>=x1 and y2>=y1, got {self.box}")
        return self


class DetectionsProduced(FrameRef):
    """Detections for one frame. Topic ``detections.v2``, key = camera_id.

    Carries every hop's timestamp so downstream stages can compute frame age.
    """

    schema_version: Literal[2] = 2
    image: ObjectRef
    annotations: ObjectRef
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    model: ModelRef
    detections: tuple[Detection, ...]
    capture_ts_ns: int = Field(gt=0)
    decoded_ts_ns: int = Field(gt=0)
    detected_ts_ns: int = Field(gt=0, description="when detection finished for the batch")


class FrameMetrics(FrameRef):
    """Per-frame, per-stage performance facts. Topic ``metrics.v2``, key = camera_id.

    Each stage emits its own; the metrics sink merges them into one document per frame
    (upsert by ``frame_id``), so only the fields a stage knows are set. ``dropped`` marks a
    frame a stage gave up on (``drop_reason`` says why): the decoder skips frames when
    publishing lags the stream, the detector drops frames older than their age budget.
    """

    schema_version: Literal[2] = 2
    stage: Literal["decoder", "detector", "renderer"]
    capture_ts_ns: int = Field(gt=0)
    decoded_ts_ns: int | None = None
    detected_ts_ns: int | None = None
    rendered_ts_ns: int | None = None
    model: ModelRef | None = None
    backend: str | None = Field(
        default=None, description="where the model ran, e.g. openvino-bf16, torch-f32"
    )
    batch_size: int | None = Field(default=None, ge=1)
    inference_ms: float | None = Field(default=None, ge=0)
    detections_by_label: dict[str, int] = Field(default_factory=dict)
    max_score: float | None = None
    mean_score: float | None = None
    dropped: bool = False
    drop_reason: str | None = None


class DetectionRequested(_Frozen):
    """An on-demand request waits for the detector. Topic ``requests.v1``, key = request_id.

    The image is stored (JPEG) and the request's row exists in Postgres before this is
    published; ``model_*`` select the registry model (exactly one of alias or version),
    ``score_threshold`` and ``classes`` filter its detections (empty: every class).
    """

    schema_version: Literal[1] = 1
    request_id: str = Field(pattern=REQUEST_ID_PATTERN)
    client_id: Id = Field(pattern=ID_PATTERN)
    image: ObjectRef
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)
    model_name: str = Field(min_length=1)
    model_alias: str | None = None
    model_version: str | None = None
    score_threshold: float = Field(ge=0.0, le=1.0)
    classes: tuple[str, ...] = ()
    created_ts_ns: int = Field(gt=0)

    @model_validator(mode="after")
    def _one_selector(self) -> DetectionRequested:
        if (self.model_alias is None) == (self.model_version is None):
            raise ValueError("set exactly one of model_alias or model_version")
        return self


class RequestProcessed(_Frozen):
    """The detector stored a request's detections (and marked it ``processed``); the renderer
    draws them. Topic ``requests.done.v1``, key = request_id."""

    schema_version: Literal[1] = 1
    request_id: str = Field(pattern=REQUEST_ID_PATTERN)
    client_id: Id = Field(pattern=ID_PATTERN)
    image: ObjectRef
    annotations: ObjectRef
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    model: ModelRef
    detections: tuple[Detection, ...]
    created_ts_ns: int = Field(gt=0)
    processed_ts_ns: int = Field(gt=0)


class TrainingJobQueued(_Frozen):
    """Topic ``training.jobs.v1``, key = job id: "job ``job_id`` is waiting in Postgres".

    Only a wake-up call: trainers also poll Postgres, so a lost event delays a job by at
    most one poll.
    """

    schema_version: Literal[1] = 1
    job_id: int = Field(gt=0)


CameraAction = Literal["created", "updated", "enabled", "disabled", "deleted"]


class CameraChanged(_Frozen):
    """A camera's row changed in Postgres (already committed). Topic ``cameras.control.v1``,
    key = ``client_id/camera_id`` (:func:`camera_key`), so one camera's changes stay ordered in
    one partition and the agent owning that partition owns the camera.

    Only a wake-up call: the owning agent re-reads the row from Postgres (the source of truth)
    and starts, restarts or stops the camera's decoder.
    """

    schema_version: Literal[1] = 1
    client_id: Id = Field(pattern=ID_PATTERN)
    camera_id: Id = Field(pattern=ID_PATTERN)
    action: CameraAction
    changed_ts_ns: int = Field(gt=0)


def camera_key(client_id: str, camera_id: str) -> bytes:
    """The Kafka key of a camera's control events: ``client/camera`` (ids hold no ``/``)."""
    return f"{client_id}/{camera_id}".encode()


CameraState = Literal["starting", "streaming", "reconnecting", "failed", "stopped", "unassigned"]


class CameraStatus(_Frozen):
    """One camera as its agent sees it, in every heartbeat.

    ``state``: ``starting`` (decoder launched, no frame yet), ``streaming`` (frames arrive),
    ``reconnecting`` (the source dropped or stalled; backing off), ``failed`` (crash loop or
    refused URL: not retried at full speed; ``last_error`` says why), ``stopped`` (disabled or
    deleted, being shut down), ``unassigned`` (the agent is at capacity and did not start it).
    Rates in frames per second over the last heartbeat interval: ``input_fps`` read from the
    source after sampling, ``output_fps`` published. ``last_capture_ts_ns``: ns since epoch.
    """

    client_id: Id = Field(pattern=ID_PATTERN)
    camera_id: Id = Field(pattern=ID_PATTERN)
    state: CameraState
    session_id: str | None = None
    input_fps: float = Field(default=0.0, ge=0)
    output_fps: float = Field(default=0.0, ge=0)
    frames_published: int = Field(default=0, ge=0)
    frames_skipped: int = Field(default=0, ge=0)
    last_capture_ts_ns: int | None = None
    reconnects: int = Field(default=0, ge=0)
    restarts: int = Field(default=0, ge=0)
    last_error: str | None = None


class AgentHeartbeat(_Frozen):
    """An agent's status, every 5 s. Topic ``agents.status.v1``, key = agent_id.

    ``capacity``: most cameras it runs at once; ``cameras``: every camera it owns (by
    partition), running or not; ``sent_ts_ns``: ns since epoch. ``stopping`` marks the last
    heartbeat of an agent shutting down cleanly.
    """

    schema_version: Literal[1] = 1
    agent_id: Id = Field(pattern=ID_PATTERN)
    host: str = Field(min_length=1, max_length=255)
    version: str = Field(min_length=1, max_length=64)
    capacity: int = Field(ge=0)
    started_ts_ns: int = Field(gt=0)
    sent_ts_ns: int = Field(gt=0)
    partitions: tuple[int, ...] = ()
    cameras: tuple[CameraStatus, ...] = ()
    stopping: bool = False


class DeadLetter(_Frozen):
    """A message a consumer could not handle. Topic ``<source topic>.dlq``.

    ``payload`` is the original message value decoded as UTF-8 with invalid bytes escaped
    (``backslashreplace``), so nothing is lost for inspection or replay.
    """

    schema_version: Literal[1] = 1
    source_topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    error_type: str
    service: str
    failed_ts_ns: int
    payload: str

    @property
    def source_id(self) -> str:
        """``<source topic>/<partition>/<offset>``: the message this letter is about. A
        replayed batch dead-letters its messages again; count distinct source ids."""
        return f"{self.source_topic}/{self.partition}/{self.offset}"


E = TypeVar("E", bound=BaseModel)


class InvalidEvent(ValueError):
    """Raised by :func:`parse_event` with a one-line reason naming the bad fields."""


def parse_event(model: type[E], raw: bytes) -> E:
    """Validate ``raw`` JSON bytes as ``model``.

    Raises:
        InvalidEvent: malformed JSON or failed validation; the message lists each bad field.
    """
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidEvent(f"invalid {model.__name__}: {problems}") from exc


def encode_event(event: BaseModel) -> bytes:
    """Serialize an event to compact JSON bytes."""
    return event.model_dump_json().encode()
