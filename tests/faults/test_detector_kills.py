"""A detector is killed (SIGKILL) again and again while it works through the frames of four
cameras, and restarted after each kill: every frame is annotated exactly once in S3 (replays
overwrite), every frame has its detections on the topic (replays may repeat them), none is
missing, and the group's lag ends at 0."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from functools import partial

import numpy as np

from infra.local.processes import ServiceProcess, free_port
from tests.faults.conftest import report, scaled
from tests.faults.counts import end_offsets, group_lag, read_since, start_group_at_end
from tests.integration.pipeline.conftest import NO_BUDGET_MS, Services, object_count, wait_for
from vidpipe.bus import make_producer
from vidpipe.decoding.publisher import DecoderService
from vidpipe.events import DetectionsProduced
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings
from vidpipe.topics import DETECTIONS, FRAMES_DECODED

CAMERAS = 4


async def publish_cameras(
    settings: ServiceSettings, client_id: str, cameras: list[str], frames: list[np.ndarray]
) -> set[tuple[str, str, int]]:
    """What a decoder per camera does (like ``publish_frames``): one new session per camera,
    ``len(frames)`` JPEGs to S3 and ``FrameDecoded`` events, cameras interleaved; returns
    the frame ids ``(camera, session, seq)``."""
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        store = ObjectStore(settings.s3)
        decoders = [DecoderService(store, producer, client_id, camera) for camera in cameras]
        pending = []
        for seq, image in enumerate(frames):
            for decoder in decoders:
                pending.append(await decoder.handle_frame(seq, image, time.time_ns()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return {
        (camera, decoder.session_id, seq)
        for camera, decoder in zip(cameras, decoders, strict=True)
        for seq in range(len(frames))
    }


def test_detector_when_killed_repeatedly_mid_run_then_every_frame_annotated_once_lag_0(
    client_id: str, vtest_frames: list[np.ndarray], settings: ServiceSettings, services: Services
) -> None:
    total = scaled(40, 400)
    kills = scaled(2, 20)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:8]
    group = f"faults-detector-kills-{tag}"
    cameras = [f"{client_id}-kcam{n}" for n in range(CAMERAS)]
    asyncio.run(start_group_at_end(settings, group, FRAMES_DECODED))
    detections_start = asyncio.run(end_offsets(settings, DETECTIONS))
    env = {
        "VIDPIPE_GROUP_ID": group,
        "VIDPIPE_REQUESTS_GROUP_ID": f"faults-detector-kills-requests-{tag}",
        "VIDPIPE_MAX_FRAME_AGE_MS": str(NO_BUDGET_MS),
        "VIDPIPE_BATCH_SIZE": "4",
    }

    def start() -> ServiceProcess:
        return services.start("detector", VIDPIPE_METRICS_PORT=str(free_port()), **env)

    def annotated() -> int:
        return object_count(settings, "annotations", f"{client_id}/", ".json")

    def reached(count: int) -> bool:
        return annotated() >= count

    started = time.monotonic()
    detector = start()
    per_camera = [vtest_frames[i % len(vtest_frames)] for i in range(total // CAMERAS)]
    frame_ids = asyncio.run(publish_cameras(settings, client_id, cameras, per_camera))
    assert len(frame_ids) == total
    # one kill in each of ``kills`` equal slices of the run, at a random count in the slice
    # (the restarted detector loads its model before it goes on, so the slices stay apart)
    at_counts: list[int] = []
    restart_s: list[float] = []
    for k in range(kills):
        low, high = k * total // (kills + 1) + 1, (k + 1) * total // (kills + 1)
        threshold = rng.randint(low, max(low, high))
        wait_for(partial(reached, threshold), 600, f"kill {k}: {threshold} frames annotated")
        detector.kill()  # SIGKILL: no commit, no leave-group
        services.running.remove(detector)
        at_counts.append(annotated())
        assert at_counts[-1] < total, f"kill {k} came after the run ended ({at_counts})"
        killed = time.monotonic()
        detector = start()
        restart_s.append(round(time.monotonic() - killed, 1))
    wait_for(lambda: annotated() >= total, 900, f"all {total} frames annotated")
    wait_for(lambda: asyncio.run(group_lag(settings, group, FRAMES_DECODED)) == 0, 180, "lag 0")
    seconds = round(time.monotonic() - started, 1)
    assert detector.alive()

    keys = set(ObjectStore(settings.s3).iter_keys("annotations", f"{client_id}/"))
    expected = {f"{client_id}/{c}/{session}/{seq}.json" for c, session, seq in frame_ids}
    assert keys == expected, (
        f"missing {sorted(expected - keys)[:5]}, unexpected {sorted(keys - expected)[:5]}"
    )
    mine = {c.encode() for c in cameras}
    produced = [
        DetectionsProduced.model_validate_json(value)
        for key, value in asyncio.run(read_since(settings, DETECTIONS, detections_start))
        if key in mine
    ]
    distinct = {(d.camera_id, d.session_id, d.frame_seq) for d in produced}
    assert distinct == frame_ids, f"missing detections for {sorted(frame_ids - distinct)[:5]}"
    lag = asyncio.run(group_lag(settings, group, FRAMES_DECODED))
    assert lag == 0
    report(
        "detector_kills",
        cameras=CAMERAS,
        frames=total,
        kills=kills,
        seed=seed,
        annotated_at_kills=at_counts,
        restart_to_started_s=restart_s,
        annotations=len(keys),
        missing=len(expected - keys),
        detections_events=len(produced),
        detections_distinct=len(distinct),
        detections_replayed=len(produced) - len(distinct),
        lag_at_end=lag,
        seconds=seconds,
    )
