"""Detection results of a camera as stored by the pipeline, with short-lived presigned URLs.

- ``annotations/{client}/{camera}/{seq}.json``: the detector's document per frame; the latest
  result is the highest ``seq`` (keys are not zero-padded, so all keys are listed).
- ``renders/{client}/{camera}/{seq}.jpg``: the annotated frame (may lag the annotation).
- ``renders/{client}/{camera}/clips/{segment:06d}.mp4``: browser-playable clips.
The caller has already checked that the camera belongs to a client it may see.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError

from services.dashboard.cameras import CameraOut
from services.dashboard.errors import Unavailable
from services.dashboard.resources import Resources
from vidpipe.events import Detection, ModelRef, ObjectRef
from vidpipe.objectstore import ObjectNotFound
from vidpipe.topics import ANNOTATIONS_BUCKET, RENDERS_BUCKET

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


def _prefix(camera: CameraOut) -> str:
    return f"{camera.client_id}/{camera.camera_id}/"


def latest_seq(resources: Resources, camera: CameraOut) -> int | None:
    """Highest frame_seq with an annotation document, or None when there is none."""
    prefix = _prefix(camera)
    best: int | None = None
    try:
        for key in resources.objects.iter_keys(ANNOTATIONS_BUCKET, prefix):
            stem = key[len(prefix) :].removesuffix(".json")
            if stem.isdigit() and (best is None or int(stem) > best):
                best = int(stem)
    except (BotoCoreError, ClientError) as exc:
        raise _unavailable(exc) from exc
    return best


def frame_result(resources: Resources, camera: CameraOut, seq: int) -> FrameResult | None:
    """The annotation of ``seq`` with presigned URLs; None if it vanished or is unreadable."""
    prefix, expires = _prefix(camera), resources.settings.presign_expires_s
    try:
        doc = json.loads(resources.objects.get(ANNOTATIONS_BUCKET, f"{prefix}{seq}.json"))
        image = ObjectRef.model_validate(doc["image"])
        rendered = any(
            True for _ in resources.objects.iter_keys(RENDERS_BUCKET, f"{prefix}{seq}.jpg")
        )
        result = FrameResult(
            frame_seq=seq,
            captured_at=datetime.fromtimestamp(doc["capture_ts_ns"] / 1e9, tz=UTC),
            width=doc["width"],
            height=doc["height"],
            model=ModelRef.model_validate(doc["model"]),
            detections=[Detection.model_validate(d) for d in doc["detections"]],
            frame_url=resources.presigner.presigned_get_url(image.bucket, image.key, expires),
            render_url=resources.presigner.presigned_get_url(
                RENDERS_BUCKET, f"{prefix}{seq}.jpg", expires
            )
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


def latest_result(resources: Resources, camera: CameraOut) -> CameraResult:
    seq = latest_seq(resources, camera)
    result = None if seq is None else frame_result(resources, camera, seq)
    return CameraResult(camera_id=camera.camera_id, result=result)


def list_clips(resources: Resources, camera: CameraOut) -> list[Clip]:
    prefix, expires = _prefix(camera) + "clips/", resources.settings.presign_expires_s
    clips: list[Clip] = []
    try:
        for key in resources.objects.iter_keys(RENDERS_BUCKET, prefix):
            stem = key[len(prefix) :].removesuffix(".mp4")
            if key.endswith(".mp4") and stem.isdigit():
                url = resources.presigner.presigned_get_url(RENDERS_BUCKET, key, expires)
                clips.append(Clip(segment=int(stem), key=key, url=url, urls_expire_in_s=expires))
    except (BotoCoreError, ClientError) as exc:
        raise _unavailable(exc) from exc
    return sorted(clips, key=lambda c: c.segment)


def _unavailable(exc: Exception) -> Unavailable:
    log.warning("object storage unavailable: %s", exc)
    return Unavailable("object storage is unavailable; try again shortly")
