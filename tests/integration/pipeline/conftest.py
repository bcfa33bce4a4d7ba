"""Fixtures for pipeline tests: the registered model, real vtest frames, a fresh client."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from infra.local.processes import ServiceProcess, start_service
from vidpipe.bus import make_consumer, make_producer
from vidpipe.cameras import CameraFields, UrlRules, create_camera
from vidpipe.configstore import ClientConfig, ConfigStore
from vidpipe.decoding.publisher import DecoderService
from vidpipe.events import DetectionsProduced
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import CameraSettings, ServiceSettings
from vidpipe.topics import DETECTIONS

REPO = Path(__file__).resolve().parents[3]
ASSETS = REPO / "var" / "assets"
LOGS = REPO / "var" / "log" / "tests"


@pytest.fixture(scope="session")
def settings() -> ServiceSettings:
    return ServiceSettings()


@pytest.fixture(scope="session")
def vtest_frames() -> list[np.ndarray]:
    """The first 60 frames of vtest.avi (real pedestrians, 768x576 BGR)."""
    from infra.local.media import fetch_vtest

    cap = cv2.VideoCapture(str(fetch_vtest(ASSETS)))
    frames: list[np.ndarray] = []
    while len(frames) < 60:
        ok, image = cap.read()
        assert ok, "vtest.avi ended early"
        frames.append(image)
    cap.release()
    return frames


#: These tests check exactly-once processing, not the live budget (tests/unit/detector and
#: the benchmark do): on a loaded 2-core machine the detector may fall behind a 10 fps camera,
#: and a frame it drops would read as lost. An hour is no budget in practice.
NO_BUDGET_MS = 3_600_000


@pytest.fixture
def client_id(stack: None, model_version: str, settings: ServiceSettings) -> Iterator[str]:
    """A fresh client with a camera and a config using coco-centernet@production."""
    client = f"it-{uuid.uuid4().hex[:8]}"
    store = ConfigStore(settings.postgres, settings.redis)
    store.put_client(client, client)
    with store.engine.begin() as conn:
        fields = CameraFields(name="test", url="file:///dev/null", fps=10)
        files_allowed = UrlRules.of(CameraSettings(allow_files=True))  # explicitly, for a test
        create_camera(conn, client, f"{client}-cam", fields, files_allowed)
    store.put_client_config(
        ClientConfig(
            client_id=client,
            model_name="coco-centernet",
            score_threshold=0.3,
            max_frame_age_ms=NO_BUDGET_MS,
        )
    )
    yield client
    store.delete_client(client)
    store.close()


async def publish_frames(
    settings: ServiceSettings,
    client_id: str,
    frames: list[np.ndarray],
    first_seq: int = 0,
    session_id: str | None = None,
) -> str:
    """What the decoder does, minus the stream: JPEGs to S3, ``FrameDecoded`` to Kafka, in
    stream session ``session_id`` (a new one when None: a decoder start); returns it."""
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        service = DecoderService(
            ObjectStore(settings.s3),
            producer,
            client_id,
            f"{client_id}-cam",
            session_id=session_id,
        )
        pending = [
            await service.handle_frame(first_seq + i, image, time.time_ns())
            for i, image in enumerate(frames)
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return service.session_id


class Services:
    """Service processes started by a test; all stopped (SIGTERM) at teardown."""

    def __init__(self) -> None:
        self.running: list[ServiceProcess] = []

    def start(self, name: str, **env: str) -> ServiceProcess:
        """Start ``name`` and, for a consumer, wait until it consumes (models loaded)."""
        proc = start_service(name, LOGS, env, tag=f"-{uuid.uuid4().hex[:6]}")
        self.running.append(proc)
        if name != "decoder":
            proc.wait_logged(f"{name} started", timeout_s=180)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.running):
            proc.stop()


@pytest.fixture
def services() -> Iterator[Services]:
    started = Services()
    yield started
    started.stop_all()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 0.5 s; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


def object_count(settings: ServiceSettings, bucket: str, prefix: str, suffix: str = "") -> int:
    return sum(1 for k in ObjectStore(settings.s3).iter_keys(bucket, prefix) if k.endswith(suffix))


async def read_keyed(
    settings: ServiceSettings, topic: str, key: bytes, group: str | None = None
) -> list[bytes]:
    """Values of ``topic`` with ``key``, read until 3 s pass with nothing new.

    ``group=None`` reads everything through a throw-away group; a service's group reads only
    what that group has not committed (and commits nothing itself).
    """
    consumer = make_consumer(settings.kafka, group or f"check-{uuid.uuid4().hex[:8]}", topic)
    await consumer.start()
    values: list[bytes] = []
    try:
        idle = 0
        while idle < 3:
            polled = await consumer.getmany(timeout_ms=1000, max_records=5000)
            records = [r for batch in polled.values() for r in batch]
            idle = 0 if records else idle + 1
            values += [r.value or b"" for r in records if r.key == key]
    finally:
        await consumer.stop()
    return values


def detections_for(settings: ServiceSettings, camera_id: str) -> list[DetectionsProduced]:
    """Every ``DetectionsProduced`` of ``camera_id`` in the topic."""
    values = asyncio.run(read_keyed(settings, DETECTIONS, camera_id.encode()))
    return [DetectionsProduced.model_validate_json(v) for v in values]
