"""The object-key layout: the only place that builds or parses keys of camera objects.

Every effect derived from a frame is keyed by the frame's identity, so a replay overwrites
instead of duplicating::

    frames/{client}/{camera}/{seq}.jpg            the decoded frame (decoder)
    annotations/{client}/{camera}/{seq}.json      its detections (detector)
    renders/{client}/{camera}/{seq}.jpg           the annotated frame (renderer)
    renders/{client}/{camera}/clips/{n:06d}.mp4   clip segment n (renderer)
    requests/{client}/{request}.jpg               an on-demand request's image (dashboard)
    requests/{client}/{request}.json              its detections (detector)
    requests/{client}/{request}.render.jpg        its annotated image (renderer)

Buckets are named in :mod:`vidpipe.topics`; everything of one camera lies under
:func:`camera_prefix`, which is what retention, deletion and listing use; everything of a
client's requests under :func:`requests_prefix` in their own bucket (a request id cannot be
mistaken for a camera's frame).
"""

from __future__ import annotations

from vidpipe.events import FrameRef, ObjectRef
from vidpipe.topics import ANNOTATIONS_BUCKET, FRAMES_BUCKET, RENDERS_BUCKET, REQUESTS_BUCKET

CLIPS_DIR = "clips"


def camera_prefix(client_id: str, camera_id: str) -> str:
    """``client/camera/``: the prefix of every object of one camera, in every bucket."""
    return f"{client_id}/{camera_id}/"


def _frame_key(frame: FrameRef, suffix: str) -> str:
    return f"{camera_prefix(frame.client_id, frame.camera_id)}{frame.frame_seq}{suffix}"


def frame_image(frame: FrameRef) -> ObjectRef:
    """Where the decoder stores the frame's JPEG."""
    return ObjectRef(bucket=FRAMES_BUCKET, key=_frame_key(frame, ".jpg"))


def annotation(frame: FrameRef) -> ObjectRef:
    """Where the detector stores the frame's annotation document (JSON)."""
    return ObjectRef(bucket=ANNOTATIONS_BUCKET, key=_frame_key(frame, ".json"))


def render(frame: FrameRef) -> ObjectRef:
    """Where the renderer stores the annotated frame (JPEG)."""
    return ObjectRef(bucket=RENDERS_BUCKET, key=_frame_key(frame, ".jpg"))


def clips_prefix(client_id: str, camera_id: str) -> str:
    """``client/camera/clips/`` in the renders bucket."""
    return f"{camera_prefix(client_id, camera_id)}{CLIPS_DIR}/"


def clip(client_id: str, camera_id: str, segment: int) -> ObjectRef:
    """Clip segment ``segment`` of a camera (MP4)."""
    return ObjectRef(
        bucket=RENDERS_BUCKET, key=f"{clips_prefix(client_id, camera_id)}{segment:06d}.mp4"
    )


def parse_seq(key: str, prefix: str, suffix: str) -> int | None:
    """The number in ``{prefix}{number}{suffix}`` (a frame seq or clip segment), or ``None``
    when ``key`` has another shape (e.g. a clip key when frames are listed)."""
    if not (key.startswith(prefix) and key.endswith(suffix)):
        return None
    stem = key[len(prefix) : len(key) - len(suffix)]
    return int(stem) if stem.isdigit() else None


def requests_prefix(client_id: str) -> str:
    """``client/``: the prefix of every object of a client's requests (requests bucket)."""
    return f"{client_id}/"


def request_image(client_id: str, request_id: str) -> ObjectRef:
    """Where the dashboard stores a request's image (JPEG)."""
    return ObjectRef(bucket=REQUESTS_BUCKET, key=f"{requests_prefix(client_id)}{request_id}.jpg")


def request_annotation(client_id: str, request_id: str) -> ObjectRef:
    """Where the detector stores a request's annotation document (JSON)."""
    return ObjectRef(bucket=REQUESTS_BUCKET, key=f"{requests_prefix(client_id)}{request_id}.json")


def request_render(client_id: str, request_id: str) -> ObjectRef:
    """Where the renderer stores a request's annotated image (JPEG)."""
    return ObjectRef(
        bucket=REQUESTS_BUCKET, key=f"{requests_prefix(client_id)}{request_id}.render.jpg"
    )


def client_prefix(client_id: str) -> str:
    """``client/``: the prefix of everything of one client (every camera, session and clip)
    in the frames, annotations and renders buckets; what retention sweeps."""
    return f"{client_id}/"
