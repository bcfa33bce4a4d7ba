"""Scenario ``renderer_kills``: the renderer's clips survive kill -9, S3 not memory being the
source of truth (a clip that a killed renderer never wrote is rebuilt from the rendered frames
at the next start). The renderer is killed just after each segment boundary and once more
after the stream's last frame, before its idle flush (short: 4 segments, 4 kills; full:
10 segments, 10 kills); every segment's clip must hold all of its frames (the MP4 decoded
and counted)."""

from __future__ import annotations

import asyncio
import io
import time

import av
import cv2
import numpy as np

from tests.faults.conftest import report, scaled
from tests.integration.pipeline.conftest import Services, object_count, wait_for
from vidpipe import keys
from vidpipe.bus import make_producer
from vidpipe.events import DetectionsProduced, FrameRef, ModelRef, encode_event
from vidpipe.objectstore import ObjectStore
from vidpipe.sessions import new_session_id
from vidpipe.settings import ServiceSettings
from vidpipe.topics import DETECTIONS, RENDERS_BUCKET

CLIP_FRAMES = 20
SEGMENTS = scaled(4, 10)


async def publish_detections(
    settings: ServiceSettings, frames: list[FrameRef], image: np.ndarray
) -> None:
    """Frame JPEGs in S3 and a ``DetectionsProduced`` (no detections) per frame: what the
    decoder and detector leave for the renderer."""
    store = ObjectStore(settings.s3)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for frame in frames:
            ref = keys.frame_image(frame)
            await store.aput(ref.bucket, ref.key, jpeg, "image/jpeg")
            now = time.time_ns()
            event = DetectionsProduced(
                **frame.model_dump(),
                image=ref,
                annotations=keys.annotation(frame),
                width=image.shape[1],
                height=image.shape[0],
                model=ModelRef(name="m", version="1"),
                detections=(),
                capture_ts_ns=now,
                decoded_ts_ns=now,
                detected_ts_ns=now,
            )
            await producer.send(DETECTIONS, encode_event(event), key=frame.camera_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


def clip_frame_count(settings: ServiceSettings, key: str) -> int:
    """Frames in the MP4 at ``key`` (decoded and counted); 0 when the clip does not exist."""
    store = ObjectStore(settings.s3)
    if not store.exists(RENDERS_BUCKET, key):
        return 0
    data = store.get(RENDERS_BUCKET, key)
    with av.open(io.BytesIO(data), mode="r") as container:
        return sum(1 for _ in container.decode(video=0))


def test_renderer_when_killed_after_segment_boundaries_then_every_clip_has_all_frames(
    client_id: str,
    vtest_frames: list[np.ndarray],
    settings: ServiceSettings,
    services: Services,
) -> None:
    started = time.monotonic()
    # given a camera session of 4 segments of 20 frames, published a segment and a bit at a time
    camera, session = f"{client_id}-cam", new_session_id()
    frames = [
        FrameRef(client_id=client_id, camera_id=camera, session_id=session, frame_seq=seq)
        for seq in range(CLIP_FRAMES * SEGMENTS)
    ]
    env = {"VIDPIPE_CLIP_FRAMES": str(CLIP_FRAMES), "VIDPIPE_CLIP_IDLE_S": "600"}
    renders = keys.session_prefix(client_id, camera, session)
    renderer = services.start("renderer", **env)
    image = cv2.resize(vtest_frames[0], (192, 144))
    published = 0
    # when the renderer is killed (SIGKILL) just after crossing each of 3 segment boundaries,
    for crossing in range(1, SEGMENTS):
        upto = crossing * CLIP_FRAMES + 2
        asyncio.run(publish_detections(settings, frames[published:upto], image))
        published = upto
        wait_for(
            lambda n=upto: object_count(settings, RENDERS_BUCKET, renders, ".jpg") >= n,  # type: ignore[misc]
            120,
            f"{upto} frames rendered",
        )
        renderer.kill()
        renderer = services.start("renderer", **env)
    asyncio.run(publish_detections(settings, frames[published:], image))
    wait_for(
        lambda: object_count(settings, RENDERS_BUCKET, renders, ".jpg") == len(frames),
        120,
        "every frame rendered",
    )
    # and killed once more after the stream's last frame, before the idle flush wrote its clip
    renderer.kill()
    services.start("renderer", **env)
    last = keys.clip(client_id, camera, session, SEGMENTS - 1).key
    wait_for(
        lambda: ObjectStore(settings.s3).exists(RENDERS_BUCKET, last), 60, "the last clip rebuilt"
    )
    services.stop_all()
    # then every segment's clip exists and holds every one of its frames
    counts = {
        segment: clip_frame_count(settings, keys.clip(client_id, camera, session, segment).key)
        for segment in range(SEGMENTS)
    }
    report(
        "renderer_kills",
        kills=SEGMENTS,
        segments=SEGMENTS,
        frames=len(frames),
        clip_frames=sorted(counts.values()),
        clips_missing=sum(1 for c in counts.values() if c == 0),
        seconds=round(time.monotonic() - started, 1),
    )
    assert counts == dict.fromkeys(range(SEGMENTS), CLIP_FRAMES)
    pending = ObjectStore(settings.s3).iter_keys(
        RENDERS_BUCKET, f"{keys.PENDING_CLIPS_PREFIX}{renders}"
    )
    assert list(pending) == []
