"""Renderer drawing, clip encoding and clip segmentation with in-memory fakes."""

from __future__ import annotations

import asyncio
import io
import time

import av
import cv2
import numpy as np

from services.renderer.clips import encode_clip
from services.renderer.draw import draw_detections, label_color
from services.renderer.service import RendererService
from tests.unit.fakes import SESSION, FakeProducer, FakeStore, record
from vidpipe import keys
from vidpipe.bus import DeadLetterPublisher
from vidpipe.events import (
    DeadLetter,
    Detection,
    DetectionsProduced,
    FrameMetrics,
    ModelRef,
    ObjectRef,
    RequestProcessed,
    encode_event,
)
from vidpipe.topics import DETECTIONS, METRICS, REQUESTS_DONE


def jpeg(value: int = 90, width: int = 64, height: int = 48) -> bytes:
    return cv2.imencode(".jpg", np.full((height, width, 3), value, np.uint8))[1].tobytes()


def detections_event(seq: int, camera_id: str = "cam-1") -> DetectionsProduced:
    now = time.time_ns()
    return DetectionsProduced(
        client_id="acme",
        camera_id=camera_id,
        session_id=SESSION,
        frame_seq=seq,
        image=ObjectRef(bucket="frames", key=f"acme/{camera_id}/{SESSION}/{seq}.jpg"),
        annotations=ObjectRef(bucket="annotations", key=f"acme/{camera_id}/{SESSION}/{seq}.json"),
        width=64,
        height=48,
        model=ModelRef(name="m", version="1"),
        detections=(Detection(box=(8, 8, 40, 40), score=0.8, label="person"),),
        capture_ts_ns=now,
        decoded_ts_ns=now,
        detected_ts_ns=now,
    )


def test_draw_detections_when_box_given_then_pixels_change_inside_color() -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    drawn = draw_detections(image, [Detection(box=(8, 8, 40, 40), score=0.8, label="person")])
    assert image.sum() == 0, "input must not be modified"
    assert tuple(drawn[30, 8]) == label_color("person")  # left edge of the box
    assert drawn[30, 30].sum() == 0  # inside the box stays untouched


def test_encode_clip_when_frames_given_then_h264_mp4_with_all_frames_and_faststart() -> None:
    data = encode_clip([jpeg(v) for v in range(0, 250, 25)], fps=10)
    assert data.index(b"moov") < data.index(b"mdat"), "moov must come first to stream"
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        frames = list(container.decode(stream))
    assert len(frames) == 10
    assert (frames[0].width, frames[0].height) == (64, 48)


async def test_handle_batch_when_detections_then_renders_metrics_and_clips_by_segment() -> None:
    # given frames 0..4 of one camera, clips of 3 frames
    store, producer = FakeStore(), FakeProducer()
    events = [detections_event(seq) for seq in range(5)]
    for ev in events:
        store.objects[("frames", ev.image.key)] = jpeg()
    service = RendererService(
        store, producer, DeadLetterPublisher(producer, "renderer"), clip_frames=3
    )
    records = [record(DETECTIONS, encode_event(ev), offset=i) for i, ev in enumerate(events)]
    # when
    await service.handle_batch(records)
    await service.flush_all()
    # then every frame is rendered once, with a renderer metric, and two clips exist
    renders = sorted(k for k in store.iter_keys("renders", "acme/cam-1/") if k.endswith(".jpg"))
    assert renders == [f"acme/cam-1/{SESSION}/{s}.jpg" for s in (0, 1, 2, 3, 4)]
    metrics = [FrameMetrics.model_validate_json(v) for v in producer.on(METRICS)]
    assert sorted(m.frame_seq for m in metrics) == [0, 1, 2, 3, 4]
    assert all(m.stage == "renderer" and m.rendered_ts_ns for m in metrics)
    for segment, count in ((0, 3), (1, 2)):
        clip = store.objects[("renders", keys.clip("acme", "cam-1", SESSION, segment).key)]
        with av.open(io.BytesIO(clip), mode="r") as container:
            assert len(list(container.decode(video=0))) == count


async def test_write_clip_when_restarted_mid_segment_then_includes_earlier_renders() -> None:
    # given a render of frame 0 made before a restart
    store, producer = FakeStore(), FakeProducer()
    store.objects[("renders", f"acme/cam-1/{SESSION}/0.jpg")] = jpeg()
    ev = detections_event(1)
    store.objects[("frames", ev.image.key)] = jpeg()
    service = RendererService(store, producer, DeadLetterPublisher(producer, "renderer"))
    # when the new process renders frame 1 and flushes
    await service.handle_batch([record(DETECTIONS, encode_event(ev))])
    await service.flush_all()
    # then the clip holds both frames
    with av.open(
        io.BytesIO(store.objects[("renders", keys.clip("acme", "cam-1", SESSION, 0).key)]), mode="r"
    ) as c:
        assert len(list(c.decode(video=0))) == 2


async def test_recover_pending_when_killed_before_clip_written_then_rebuilt_from_s3() -> None:
    # given a renderer that rendered frames 0..4 (segments of 3) and died without flushing
    store, producer = FakeStore(), FakeProducer()
    events = [detections_event(seq) for seq in range(5)]
    for ev in events:
        store.objects[("frames", ev.image.key)] = jpeg()
    dead = RendererService(
        store, producer, DeadLetterPublisher(producer, "renderer"), clip_frames=3
    )
    await dead.handle_batch([record(DETECTIONS, encode_event(ev)) for ev in events])
    # (segment 0 was written when segment 1 opened; segment 1 is still open in memory)
    assert ("renders", keys.clip("acme", "cam-1", SESSION, 1).key) not in store.objects
    marker = keys.pending_clip("acme", "cam-1", SESSION, 1)
    assert (marker.bucket, marker.key) in store.objects
    # when a new renderer starts
    fresh = RendererService(
        store, producer, DeadLetterPublisher(producer, "renderer"), clip_frames=3
    )
    assert await fresh.recover_pending() == 1
    # then the lost clip exists with both of its frames, and no marker is left
    clip = store.objects[("renders", keys.clip("acme", "cam-1", SESSION, 1).key)]
    with av.open(io.BytesIO(clip), mode="r") as container:
        assert len(list(container.decode(video=0))) == 2
    assert not list(store.iter_keys("renders", keys.PENDING_CLIPS_PREFIX))
    assert await fresh.recover_pending() == 0


async def test_flush_all_when_one_clip_fails_then_others_written_and_marker_kept() -> None:
    # given two cameras' open clips, and a store that refuses one camera's clip
    store, producer = FakeStore(), FakeProducer()
    events = [detections_event(0, "cam-1"), detections_event(0, "cam-2")]
    for ev in events:
        store.objects[("frames", ev.image.key)] = jpeg()
    service = RendererService(store, producer, DeadLetterPublisher(producer, "renderer"))
    await service.handle_batch([record(DETECTIONS, encode_event(ev)) for ev in events])
    real_put = store.aput

    async def flaky_put(bucket: str, key: str, data: bytes, content_type: str) -> None:
        if key.startswith("acme/cam-1/") and key.endswith(".mp4"):
            raise OSError("S3 unreachable")
        await real_put(bucket, key, data, content_type)

    store.aput = flaky_put  # type: ignore[method-assign]
    # when flushing at shutdown
    await service.flush_all()
    # then cam-2's clip is written and cam-1's marker remains for the next start
    assert ("renders", keys.clip("acme", "cam-2", SESSION, 0).key) in store.objects
    pending = list(store.iter_keys("renders", keys.PENDING_CLIPS_PREFIX))
    assert pending == [keys.pending_clip("acme", "cam-1", SESSION, 0).key]


async def test_handle_batch_when_image_missing_or_event_malformed_then_dead_lettered() -> None:
    store, producer = FakeStore(), FakeProducer()
    good, missing = detections_event(0), detections_event(1)
    store.objects[("frames", good.image.key)] = jpeg()
    service = RendererService(store, producer, DeadLetterPublisher(producer, "renderer"))
    records = [
        record(DETECTIONS, encode_event(good), offset=0),
        record(DETECTIONS, encode_event(missing), offset=1),
        record(DETECTIONS, b"[]", offset=2),
    ]
    await service.handle_batch(records)
    letters = [DeadLetter.model_validate_json(v) for v in producer.on(DETECTIONS + ".dlq")]
    assert sorted((d.offset, d.error_type) for d in letters) == [
        (1, "missing_image"),
        (2, "invalid_event"),
    ]
    assert ("renders", f"acme/cam-1/{SESSION}/0.jpg") in store.objects


async def test_renderer_when_request_processed_then_annotated_image_stored_at_request_key() -> None:
    store, producer = FakeStore(), FakeProducer()
    request_id = "0123456789abcdef0123456789abcdef"
    image = keys.request_image("acme", request_id)
    store.objects[(image.bucket, image.key)] = jpeg(value=40)
    event = RequestProcessed(
        request_id=request_id,
        client_id="acme",
        image=image,
        annotations=keys.request_annotation("acme", request_id),
        width=64,
        height=48,
        model=ModelRef(name="m", version="1"),
        detections=(Detection(box=(4, 4, 40, 30), score=0.9, label="person"),),
        created_ts_ns=time.time_ns(),
        processed_ts_ns=time.time_ns(),
    )
    service = RendererService(store, producer, DeadLetterPublisher(producer, "renderer"))

    await service.handle_batch([record(REQUESTS_DONE, encode_event(event))])

    render = keys.request_render("acme", request_id)
    drawn = cv2.imdecode(np.frombuffer(store.objects[(render.bucket, render.key)], np.uint8), 1)
    assert (
        drawn is not None and drawn.shape == (48, 64, 3) and drawn[4, 20].max() > 100
    )  # the box edge is bright
    assert producer.on(METRICS) == []  # a request is no camera frame: no frame metrics


async def test_idle_flusher_when_flush_fails_then_logged_and_keeps_running() -> None:
    from services.renderer.__main__ import FLUSH_FAILURES, _flush_idle_clips

    class Flaky:
        calls = 0

        async def flush_idle(self, idle_s: float) -> None:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise OSError("S3 unreachable")

    stop = asyncio.Event()
    before = FLUSH_FAILURES._value.get()
    task = asyncio.create_task(_flush_idle_clips(Flaky(), 0.02, stop))  # type: ignore[arg-type]
    while Flaky.calls < 3:
        await asyncio.sleep(0.01)
    stop.set()
    await task  # ends cleanly when stopped, not with the first failure
    assert FLUSH_FAILURES._value.get() == before + 1
