"""Detection results of a camera as stored by the pipeline, with short-lived presigned URLs.

- annotations (:func:`vidpipe.keys.annotation`): the detector's document per frame; the latest
  result is the frame the camera's latest-frame pointer names (:mod:`vidpipe.latest`, one Redis
  read); only a camera without a pointer (older data, Redis down) lists its keys.
- renders (:func:`vidpipe.keys.render`): the annotated frame (may lag the annotation).
- clips (:func:`vidpipe.keys.clip`): browser-playable MP4 segments of each stream session.
A frame is named by its stream session and seq (:class:`vidpipe.events.FrameRef`).
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
    session_id: str
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
    session_id: str
    segment: int
    key: str
    url: str
    urls_expire_in_s: int


#: A frame of a camera: (session_id, frame_seq).
FrameKey = tuple[str, int]


def _frame(camera: Camera, frame: FrameKey) -> FrameRef:
    session_id, seq = frame
    return FrameRef(
        client_id=camera.client_id,
        camera_id=camera.camera_id,
        session_id=session_id,
        frame_seq=seq,
    )


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


def latest_frame(resources: Resources, camera: Camera) -> FrameKey | None:
    """The newest frame with an annotation document, or None when there is none: the
    camera's latest-frame pointer, else (no pointer yet, or Redis unavailable) the highest
    seq of the newest session among its annotation keys."""
    try:
        frame = read_latest(resources.redis, camera.client_id, camera.camera_id)
    except RedisError as exc:
        log.warning("latest-frame pointer unreadable, listing instead: %s", exc)
        frame = None
    return frame if frame is not None else listed_latest_frame(resources, camera)


def _session_and_seq(key: str, camera: Camera, suffix: str) -> FrameKey | None:
    session = keys.parse_session(key, camera.client_id, camera.camera_id)
    if session is None:
        return None
    seq = keys.parse_seq(
        key, keys.session_prefix(camera.client_id, camera.camera_id, session), suffix
    )
    return None if seq is None else (session, seq)


def listed_latest_frame(resources: Resources, camera: Camera) -> FrameKey | None:
    """The newest session's highest frame_seq among the camera's annotation keys (lists
    all of them; session ids sort by start time)."""
    prefix = keys.camera_prefix(camera.client_id, camera.camera_id)
    try:
        found = [
            _session_and_seq(key, camera, ".json")
            for key in resources.objects.iter_keys(ANNOTATIONS_BUCKET, prefix)
        ]
    except (BotoCoreError, ClientError) as exc:
        raise _unavailable(exc) from exc
    return max((frame for frame in found if frame is not None), default=None)


def frame_result(resources: Resources, camera: Camera, frame: FrameKey) -> FrameResult | None:
    """The annotation of ``frame`` with presigned URLs; None if it vanished or is unreadable."""
    expires = resources.settings.presign_expires_s
    annotation, render = keys.annotation(_frame(camera, frame)), keys.render(_frame(camera, frame))
    try:
        doc = json.loads(resources.objects.get(annotation.bucket, annotation.key))
        image = own_frame(camera, ObjectRef.model_validate(doc["image"]))
        rendered = resources.objects.exists(render.bucket, render.key)
        result = FrameResult(
            session_id=frame[0],
            frame_seq=frame[1],
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
            "unreadable annotation: %s",
            exc,
            extra={"camera_id": camera.camera_id, "session_id": frame[0], "seq": frame[1]},
        )
        return None
    except (BotoCoreError, ClientError) as exc:
        raise _unavailable(exc) from exc
    return result


def latest_result(resources: Resources, camera: Camera) -> CameraResult:
    frame = latest_frame(resources, camera)
    result = None if frame is None else frame_result(resources, camera, frame)
    return CameraResult(camera_id=camera.camera_id, result=result)


def list_clips(resources: Resources, camera: Camera) -> list[Clip]:
    """Every clip of the camera, oldest first: by session (start time), then segment."""
    prefix = keys.camera_prefix(camera.client_id, camera.camera_id)
    expires = resources.settings.presign_expires_s
    clips: list[Clip] = []
    try:
        for key in resources.objects.iter_keys(RENDERS_BUCKET, prefix):
            session = keys.parse_session(key, camera.client_id, camera.camera_id)
            if session is None:
                continue
            clips_of = keys.clips_prefix(camera.client_id, camera.camera_id, session)
            segment = keys.parse_seq(key, clips_of, ".mp4")
            if segment is not None:
                url = resources.presigner.presigned_get_url(RENDERS_BUCKET, key, expires)
                clips.append(
                    Clip(
                        session_id=session,
                        segment=segment,
                        key=key,
                        url=url,
                        urls_expire_in_s=expires,
                    )
                )
    except (BotoCoreError, ClientError) as exc:
        raise _unavailable(exc) from exc
    return sorted(clips, key=lambda c: (c.session_id, c.segment))


def _unavailable(exc: Exception) -> Unavailable:
    log.warning("object storage unavailable: %s", exc)
    return Unavailable("object storage is unavailable; try again shortly")
