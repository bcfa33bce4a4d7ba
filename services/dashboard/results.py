"""Detection results of a camera as stored by the pipeline, with short-lived presigned URLs.

- annotations (:func:`vidpipe.keys.annotation`): the detector's document per frame; the latest
  result is the frame the camera's latest-frame pointer names (:mod:`vidpipe.latest`, one Redis
  read); only a camera without a pointer (older data, Redis down) lists its keys.
- renders (:func:`vidpipe.keys.render`): the annotated frame (may lag the annotation).
- clips (:func:`vidpipe.keys.clip`): browser-playable MP4 segments.
The caller has already checked that the camera belongs to a client it may see. The dashboard
signs only objects under that camera's own ``client/camera/`` prefix: an annotation naming
any other object (another tenant's, another bucket) is treated as unreadable.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from services.dashboard.errors import Unavailable
from services.dashboard.resources import Resources
from vidpipe import keys
from vidpipe.cameras import Camera
from vidpipe.events import Detection, FrameRef, ModelRef, ObjectRef
from vidpipe.latest import read_latest
from vidpipe.objectstore import ObjectNotFound
from vidpipe.topics import ANNOTATIONS_BUCKET, FRAMES_BUCKET, RENDERS_BUCKET

log = logging.getLogger(__name__)


class FrameResult(BaseModel):
    frame_seq: int
    captured_at: datetime
    width: int
    height: int
    model: ModelRef
    detections: list[Detection]
    frame_url: str
    render_url: str | None
    urls_expire_in_s: int


class CameraResult(BaseModel):
    camera_id: str
    result: FrameResult | None


class Clip(BaseModel):
    segment: int
    key: str
    url: str
    urls_expire_in_s: int


def _frame(camera: Camera, seq: int) -> FrameRef:
    return FrameRef(client_id=camera.client_id, camera_id=camera.camera_id, frame_seq=seq)


class ForeignObject(ValueError):
    """An annotation names an object outside its camera's prefix."""


def own_frame(camera: Camera, image: ObjectRef) -> ObjectRef:
    """``image`` when it is a frame under the camera's own prefix.

    Raises:
        ForeignObject: another bucket, or a key outside ``client/camera/``.
    """
    prefix = keys.camera_prefix(camera.client_id, camera.camera_id)
    if image.bucket != FRAMES_BUCKET or not image.key.startswith(prefix) or ".." in image.key:
        raise ForeignObject(
            f"annotation names {image.bucket}/{image.key}, not a frame of its camera"
        )
    return image


def latest_seq(resources: Resources, camera: Camera) -> int | None:
    """The newest frame_seq with an annotation document, or None when there is none: the
    camera's latest-frame pointer, else (no pointer yet, or Redis unavailable) the highest
    seq among its annotation keys."""
    try:
        seq = read_latest(resources.redis, camera.client_id, camera.camera_id)
    except RedisError as exc:
        log.warning("latest-frame pointer unreadable, listing instead: %s", exc)
        seq = None
    return seq if seq is not None else listed_latest_seq(resources, camera)


def listed_latest_seq(resources: Resources, camera: Camera) -> int | None:
    """Highest frame_seq among the camera's annotation keys (lists all of them)."""
    prefix = keys.camera_prefix(camera.client_id, camera.camera_id)
    try:
        found = [
            keys.parse_seq(key, prefix, ".json")
            for key in resources.objects.iter_keys(ANNOTATIONS_BUCKET, prefix)
        ]
    except (BotoCoreError, ClientError) as exc:
        raise _unavailable(exc) from exc
    return max((seq for seq in found if seq is not None), default=None)


def frame_result(resources: Resources, camera: Camera, seq: int) -> FrameResult | None:
    """The annotation of ``seq`` with presigned URLs; None if it vanished or is unreadable."""
    expires = resources.settings.presign_expires_s
    annotation, render = keys.annotation(_frame(camera, seq)), keys.render(_frame(camera, seq))
    try:
        doc = json.loads(resources.objects.get(annotation.bucket, annotation.key))
        image = own_frame(camera, ObjectRef.model_validate(doc["image"]))
        rendered = resources.objects.exists(render.bucket, render.key)
        result = FrameResult(
            frame_seq=seq,
            captured_at=datetime.fromtimestamp(doc["capture_ts_ns"] / 1e9, tz=UTC),
            width=doc["width"],
            height=doc["height"],
            model=ModelRef.model_validate(doc["model"]),
            detections=[Detection.model_validate(d) for d in doc["detections"]],
            frame_url=resources.presigner.presigned_get_url(image.bucket, image.key, expires),
            render_url=resources.presigner.presigned_get_url(render.bucket, render.key, expires)
            if rendered
            else None,
            urls_expire_in_s=expires,
        )
    except ObjectNotFound:
        return None
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        log.warning(
            "unreadable annotation: %s", exc, extra={"camera_id": camera.camera_id, "seq": seq}
        )
        return None
    except (BotoCoreError, ClientError) as exc:
        raise _unavailable(exc) from exc
    return result


def latest_result(resources: Resources, camera: Camera) -> CameraResult:
    seq = latest_seq(resources, camera)
    result = None if seq is None else frame_result(resources, camera, seq)
    return CameraResult(camera_id=camera.camera_id, result=result)


def list_clips(resources: Resources, camera: Camera) -> list[Clip]:
    prefix = keys.clips_prefix(camera.client_id, camera.camera_id)
    expires = resources.settings.presign_expires_s
    clips: list[Clip] = []
    try:
        for key in resources.objects.iter_keys(RENDERS_BUCKET, prefix):
            segment = keys.parse_seq(key, prefix, ".mp4")
            if segment is not None:
                url = resources.presigner.presigned_get_url(RENDERS_BUCKET, key, expires)
                clips.append(Clip(segment=segment, key=key, url=url, urls_expire_in_s=expires))
    except (BotoCoreError, ClientError) as exc:
        raise _unavailable(exc) from exc
    return sorted(clips, key=lambda c: c.segment)


def _unavailable(exc: Exception) -> Unavailable:
    log.warning("object storage unavailable: %s", exc)
    return Unavailable("object storage is unavailable; try again shortly")
