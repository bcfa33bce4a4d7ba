"""The pipeline against real services: Tansu (Kafka API), SeaweedFS (S3), Postgres, Redis,
MLflow, the MongoDB stand-in, and vtest.avi served over a real RTSP server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from redis import Redis

from tests.integration.pipeline.conftest import (
    ASSETS,
    LOGS,
    NO_BUDGET_MS,
    Services,
    detections_for,
    object_count,
    publish_frames,
    read_keyed,
    wait_for,
)
from vidpipe.configstore import ClientConfig, ConfigStore
from vidpipe.events import DeadLetter, FrameDecoded, ObjectRef, encode_event
from vidpipe.latest import read_latest
from vidpipe.metricsstore import MetricsStore
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings
from vidpipe.topics import DETECTIONS, FRAMES_DECODED, dead_letter_topic
from vidpipe_cli.demo.runner import PipelineRun, run_pipeline

pytestmark = pytest.mark.integration

CLIP_FRAMES = 60


@pytest.fixture(scope="module")
def rtsp_url(stack: None) -> Iterator[str]:
    """The first 60 frames of vtest.avi (H.264) served at rtsp://127.0.0.1:8555/it."""
    from infra.local.media import (
        fetch_vtest,
        start_rtsp_server,
        stop_rtsp_server,
        transcode_h264,
    )

    clip = transcode_h264(
        fetch_vtest(ASSETS), ASSETS / f"vtest-{CLIP_FRAMES}.mp4", max_frames=CLIP_FRAMES
    )
    proc = start_rtsp_server(clip, 8555, "/it", LOGS / "rtsp-server.log")
    yield "rtsp://127.0.0.1:8555/it"
    stop_rtsp_server(proc)


def _uncommitted_for(settings: ServiceSettings, group: str, topic: str, key: bytes) -> int:
    return len(asyncio.run(read_keyed(settings, topic, key, group)))


def test_pipeline_when_rtsp_clip_then_each_frame_detected_and_rendered_once(
    client_id: str, rtsp_url: str, settings: ServiceSettings, tmp_path: Path
) -> None:
    # given a camera reading 60 real vtest frames over RTSP
    camera = f"{client_id}-cam"
    run = PipelineRun(
        client_id,
        camera,
        rtsp_url,
        fps=10,
        expected_frames=CLIP_FRAMES,
        max_frame_age_ms=NO_BUDGET_MS,
    )
    # when decoder, detector, renderer and metrics sink run to the end of the stream
    summary, _ = run_pipeline(settings, run, LOGS / camera, timeout_s=300)
    # then every decoded frame is detected and rendered exactly once in the end state
    assert summary["frames_decoded"] >= CLIP_FRAMES - 5
    assert summary["frames_decoded"] == summary["frames_detected"] == summary["frames_rendered"]
    assert summary["detections_by_label"].get("person", 0) >= summary["frames_decoded"] * 2
    assert summary["dead_letters"] == 0
    assert summary["clip"] and summary["clip"].endswith(".mp4")
    assert summary["latency_ms"]["p95"] >= summary["latency_ms"]["p50"] > 0
    # one metrics document per frame, merged from detector and renderer
    docs = MetricsStore(settings.mongo).find({"client_id": client_id})
    assert len(docs) == summary["frames_decoded"]
    assert all(d.get("detected_ts_ns") and d.get("rendered_ts_ns") for d in docs)
    # offsets are committed: nothing of this camera is left for the detector or renderer
    key = camera.encode()
    assert _uncommitted_for(settings, "detector", FRAMES_DECODED, key) == 0
    assert _uncommitted_for(settings, "renderer", DETECTIONS, key) == 0
    # the camera's latest-frame pointer names its newest detected frame
    newest = max(detections_for(settings, camera), key=lambda d: d.capture_ts_ns)
    with Redis.from_url(settings.redis.url) as redis:
        assert read_latest(redis, client_id, camera) == (newest.session_id, newest.frame_seq)


def test_pipeline_when_frames_replayed_then_no_duplicate_objects_or_records(
    client_id: str, vtest_frames: list[np.ndarray], settings: ServiceSettings, services: Services
) -> None:
    # given 20 frames processed once
    camera, prefix = f"{client_id}-cam", f"{client_id}/{client_id}-cam/"
    frames = vtest_frames[:20]
    for name in ("metrics-sink", "detector", "renderer"):
        services.start(name)
    session = asyncio.run(publish_frames(settings, client_id, frames))
    metrics = MetricsStore(settings.mongo)
    wait_for(
        lambda: len(metrics.find({"client_id": client_id, "rendered_ts_ns": {"$gt": 0}})) == 20,
        180,
        "20 frames rendered",
    )
    # when the very same frames of the same session are published again (a replay)
    asyncio.run(publish_frames(settings, client_id, frames, session_id=session))
    wait_for(
        lambda: len(detections_for(settings, camera)) == 40,
        180,
        "the replayed frames to be detected",
    )
    services.stop_all()  # renderer flushes its clip; all effects are durable
    # then each frame still has exactly one object per bucket and one metrics document
    assert object_count(settings, "frames", prefix) == 20
    assert object_count(settings, "annotations", prefix) == 20
    assert object_count(settings, "renders", prefix, ".jpg") == 20
    assert object_count(settings, "renders", f"{prefix}{session}/clips/", ".mp4") == 1
    assert len(metrics.find({"client_id": client_id})) == 20


def test_detector_when_bad_inputs_then_dead_lettered_and_keeps_going(
    client_id: str, vtest_frames: list[np.ndarray], settings: ServiceSettings, services: Services
) -> None:
    # given a client whose model does not exist, a corrupt JPEG and a malformed event
    store = ConfigStore(settings.postgres, settings.redis)
    ghost = f"{client_id}-ghost"
    store.put_client(ghost, ghost)
    store.put_client_config(ClientConfig(client_id=ghost, model_name="no-such-model"))
    objects = ObjectStore(settings.s3)
    corrupt_key = f"{client_id}/{client_id}-cam/900.jpg"
    objects.put("frames", corrupt_key, b"\xff\xd8\xff\xe0 truncated", "image/jpeg")
    camera = f"{client_id}-cam"
    services.start("detector")  # before the frames are made: they must be fresh when read

    def frame(seq: int, client: str, key: str) -> bytes:
        return encode_event(
            FrameDecoded(
                client_id=client, camera_id=camera, session_id="s1", frame_seq=seq,
                capture_ts_ns=time.time_ns(),
                decoded_ts_ns=time.time_ns(), width=768, height=576,
                image=ObjectRef(bucket="frames", key=key),
            )
        )  # fmt: skip

    bad = {
        "invalid_event": b'{"client_id": 7}',
        "unknown_client": frame(901, f"{client_id}-nobody", corrupt_key),
        "undecodable_image": frame(900, client_id, corrupt_key),
        "model_unavailable": frame(902, ghost, corrupt_key),
    }

    async def produce_bad() -> None:
        from vidpipe.bus import make_producer

        producer = make_producer(settings.kafka)
        await producer.start()
        for value in bad.values():
            await producer.send_and_wait(FRAMES_DECODED, value, key=camera.encode())
        await producer.stop()

    asyncio.run(produce_bad())
    # when good frames follow the bad ones
    asyncio.run(publish_frames(settings, client_id, vtest_frames[:3]))
    # then the good frames are detected ...
    wait_for(
        lambda: object_count(settings, "annotations", f"{client_id}/") == 3, 120, "3 annotations"
    )
    # ... and each bad message is in the dead-letter topic with its reason and payload
    letters = _dead_letters(settings, camera)
    by_type = {letter.error_type: letter for letter in letters}
    assert set(by_type) == set(bad)
    for error_type, value in bad.items():
        assert by_type[error_type].payload == value.decode()
        assert by_type[error_type].reason
    assert "no-such-model" in by_type["model_unavailable"].reason
    assert services.running[0].alive()
    store.delete_client(ghost)


def _dead_letters(settings: ServiceSettings, camera_id: str) -> list[DeadLetter]:
    topic = dead_letter_topic(FRAMES_DECODED)
    values = asyncio.run(read_keyed(settings, topic, camera_id.encode()))
    return [DeadLetter.model_validate_json(v) for v in values]


def test_detector_when_threshold_changed_then_next_frames_use_it_without_restart(
    client_id: str, vtest_frames: list[np.ndarray], settings: ServiceSettings, services: Services
) -> None:
    # given a running detector and frames detected at threshold 0.3
    camera = f"{client_id}-cam"
    services.start("detector")
    asyncio.run(publish_frames(settings, client_id, vtest_frames[:5]))
    wait_for(lambda: len(detections_for(settings, camera)) == 5, 120, "5 frames")
    # when the threshold is raised to 1.0 in Postgres (cache invalidated by the store)
    store = ConfigStore(settings.postgres, settings.redis)
    store.put_client_config(
        ClientConfig(
            client_id=client_id,
            model_name="coco-centernet",
            score_threshold=1.0,
            max_frame_age_ms=NO_BUDGET_MS,
        )
    )
    asyncio.run(publish_frames(settings, client_id, vtest_frames[5:10], first_seq=5))
    wait_for(lambda: len(detections_for(settings, camera)) == 10, 120, "10 frames")
    # then frames before the change have persons, frames after have nothing >= 1.0
    events = {e.frame_seq: e for e in detections_for(settings, camera)}
    assert all(len(events[s].detections) > 0 for s in range(5))
    assert all(len(events[s].detections) == 0 for s in range(5, 10))
    assert services.running[0].alive(), "applied without restarting the detector"


def test_detector_when_killed_mid_stream_then_restart_loses_no_frame(
    client_id: str, vtest_frames: list[np.ndarray], settings: ServiceSettings, services: Services
) -> None:
    # given a detector working through 120 frames
    prefix = f"{client_id}/"
    frames = vtest_frames + vtest_frames
    # (a budget as long as the test: at-least-once, not liveness, is what is checked here)
    patient = {"VIDPIPE_MAX_FRAME_AGE_MS": "600000"}
    first = services.start("detector", VIDPIPE_BATCH_SIZE="4", **patient)
    session = asyncio.run(publish_frames(settings, client_id, frames))
    wait_for(lambda: object_count(settings, "annotations", prefix) >= 8, 120, "first frames")
    # when it is killed with SIGKILL mid-stream and started again
    first.kill()
    done_before_kill = object_count(settings, "annotations", prefix)
    assert done_before_kill < len(frames), "the kill must land mid-stream"
    services.start("detector", **patient)
    # then every frame ends up detected
    wait_for(
        lambda: object_count(settings, "annotations", prefix) == len(frames),
        240,
        "all 120 frames after restart",
    )
    store = ObjectStore(settings.s3)
    docs = [
        json.loads(store.get("annotations", f"{prefix}{client_id}-cam/{session}/{seq}.json"))
        for seq in (0, len(frames) - 1)
    ]
    assert all(d["detections"] for d in docs)
