"""The object-key layout: the only place that builds or parses keys of camera objects.

Every effect derived from a frame is keyed by the frame's identity (camera, stream session,
seq), so a replay overwrites instead of duplicating, and a decoder restart (a new session)
never overwrites an earlier run::

    frames/{client}/{camera}/{session}/{seq}.jpg              the decoded frame (decoder)
    annotations/{client}/{camera}/{session}/{seq}.json        its detections (detector)
    renders/{client}/{camera}/{session}/{seq}.jpg             the annotated frame (renderer)
    renders/{client}/{camera}/{session}/clips/{n:06d}.mp4     clip segment n (renderer)
    requests/{client}/{request}.jpg               an on-demand request's image (dashboard)
    requests/{client}/{request}.json              its detections (detector)
    requests/{client}/{request}.render.jpg        its annotated image (renderer)

Buckets are named in :mod:`vidpipe.topics`; everything of one camera lies under
:func:`camera_prefix`, which is what retention, deletion and listing use, and everything of
one session under :func:`session_prefix`; everything of a client's requests under
:func:`requests_prefix` in their own bucket (a request id cannot be mistaken for a camera's
frame). Session ids sort by start time (:mod:`vidpipe.sessions`).

One more, outside any camera's prefix: while the renderer collects a clip segment it keeps a
marker at :func:`pending_clip` (``renders/_pending-clips/{client}/{camera}/{session}/{n}``;
ids never start with ``_``), deleted once the clip is written, so a renderer that dies first
leaves a record of the clip to rebuild from the rendered frames.
"""

from __future__ import annotations

from vidpipe.events import FrameRef, ObjectRef
from vidpipe.topics import ANNOTATIONS_BUCKET, FRAMES_BUCKET, RENDERS_BUCKET, REQUESTS_BUCKET

CLIPS_DIR = "clips"


def camera_prefix(client_id: str, camera_id: str) -> str:
    """``client/camera/``: the prefix of every object of one camera, in every bucket."""
    return f"{client_id}/{camera_id}/"


def session_prefix(client_id: str, camera_id: str, session_id: str) -> str:
    """``client/camera/session/``: the prefix of every object of one stream session."""
    return f"{camera_prefix(client_id, camera_id)}{session_id}/"


def parse_session(key: str, client_id: str, camera_id: str) -> str | None:
    """The session id in a key under :func:`camera_prefix`, or None for another shape."""
    prefix = camera_prefix(client_id, camera_id)
    if not key.startswith(prefix):
        return None
    session, sep, _ = key[len(prefix) :].partition("/")
    return session if sep and session else None


def _frame_key(frame: FrameRef, suffix: str) -> str:
    prefix = session_prefix(frame.client_id, frame.camera_id, frame.session_id)
    return f"{prefix}{frame.frame_seq}{suffix}"


def frame_image(frame: FrameRef) -> ObjectRef:
    """Where the decoder stores the frame's JPEG."""
    return ObjectRef(bucket=FRAMES_BUCKET, key=_frame_key(frame, ".jpg"))


def annotation(frame: FrameRef) -> ObjectRef:
    """Where the detector stores the frame's annotation document (JSON)."""
    return ObjectRef(bucket=ANNOTATIONS_BUCKET, key=_frame_key(frame, ".json"))


def render(frame: FrameRef) -> ObjectRef:
    """Where the renderer stores the annotated frame (JPEG)."""
    return ObjectRef(bucket=RENDERS_BUCKET, key=_frame_key(frame, ".jpg"))


def clips_prefix(client_id: str, camera_id: str, session_id: str) -> str:
    """``client/camera/session/clips/`` in the renders bucket."""
    return f"{session_prefix(client_id, camera_id, session_id)}{CLIPS_DIR}/"


def clip(client_id: str, camera_id: str, session_id: str, segment: int) -> ObjectRef:
    """Clip segment ``segment`` of one stream session of a camera (MP4)."""
    prefix = clips_prefix(client_id, camera_id, session_id)
    return ObjectRef(bucket=RENDERS_BUCKET, key=f"{prefix}{segment:06d}.mp4")


#: Where open clip segments are marked (renders bucket).
PENDING_CLIPS_PREFIX = "_pending-clips/"


def pending_clip(client_id: str, camera_id: str, session_id: str, segment: int) -> ObjectRef:
    """The marker of clip segment ``segment`` while the renderer collects its frames."""
    session = session_prefix(client_id, camera_id, session_id)
    return ObjectRef(bucket=RENDERS_BUCKET, key=f"{PENDING_CLIPS_PREFIX}{session}{segment:06d}")


def parse_pending_clip(key: str) -> tuple[str, str, str, int] | None:
    """``(client, camera, session, segment)`` of a :func:`pending_clip` key, else None."""
    if not key.startswith(PENDING_CLIPS_PREFIX):
        return None
    parts = key[len(PENDING_CLIPS_PREFIX) :].split("/")
    if len(parts) != 4 or not parts[3].isdigit():
        return None
    client_id, camera_id, session_id, segment = parts
    return client_id, camera_id, session_id, int(segment)


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
