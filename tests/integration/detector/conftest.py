"""Fixtures for detector outage tests: the real detector wiring run in this process on a
frames topic of its own, its Redis, Postgres and MLflow reached through TCP proxies the
tests cut and freeze (the shared services themselves are never touched).

A topic of its own: a detector in a fresh consumer group on the shared frames topic would
read everybody's frames and dead-letter them as unknown clients (this test's database does
not know them), next to the cameras of other tests. Here the frames, the dead letters and the
group are this module's; detections and metrics go to the shared topics keyed by this
module's camera ids, as for any camera.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from services.detector.__main__ import wiring
from services.detector.settings import DetectorSettings
from tests.integration.detector.proxy import TcpProxy
from vidpipe import keys
from vidpipe.bus import ensure_topics, make_consumer, make_producer
from vidpipe.configstore import ClientConfig, ConfigStore
from vidpipe.events import DeadLetter, FrameDecoded, FrameRef, encode_event
from vidpipe.objectstore import ObjectStore
from vidpipe.retries import RetryPolicy
from vidpipe.runner import ConsumerSpec, consume
from vidpipe.sessions import new_session_id
from vidpipe.settings import MlflowSettings, PostgresSettings, RedisSettings, ServiceSettings
from vidpipe.topics import ANNOTATIONS_BUCKET, TopicSpec, dead_letter_topic

#: no frame-age budget: these tests count frames, a slow shared CPU must not drop any
NO_BUDGET_MS = 3_600_000
#: the stream session of every frame these tests publish
SESSION = new_session_id()


def _port_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", int(parts.port or 0)


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


class Proxies:
    """One :class:`TcpProxy` per dependency: ``redis``, ``postgres``, ``mlflow``."""

    def __init__(self, settings: ServiceSettings) -> None:
        dsn = conninfo_to_dict(settings.postgres.dsn.get_secret_value())
        self.redis = TcpProxy(*_port_of(settings.redis.url))
        self.postgres = TcpProxy(str(dsn.get("host", "127.0.0.1")), int(str(dsn.get("port", 5432))))
        self.mlflow = TcpProxy(*_port_of(settings.mlflow.tracking_uri))
        via = {k: str(v) for k, v in dsn.items() if v is not None}
        self.dsn = make_conninfo(
            "", **{**via, "host": "127.0.0.1", "port": str(self.postgres.port)}
        )

    def __getitem__(self, name: str) -> TcpProxy:
        proxy: TcpProxy = getattr(self, name)
        return proxy

    def restore_all(self) -> None:
        for proxy in (self.redis, self.postgres, self.mlflow):
            proxy.restore()

    def close(self) -> None:
        for proxy in (self.redis, self.postgres, self.mlflow):
            proxy.close()


class InProcessDetector:
    """``vidpipe run detector``'s wiring and runner on ``topic``, in a thread of its own."""

    def __init__(self, settings: DetectorSettings, topic: str) -> None:
        self.settings = settings
        self._spec = ConsumerSpec(
            service="detector",
            topics=(topic,),
            group_id=settings.group_id,
            max_records=settings.batch_size * 4,
            poll_timeout_ms=settings.batch_timeout_ms,
            metrics_port=None,
            retry=RetryPolicy(initial_s=0.2, max_backoff_s=2.0),
        )
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="detector")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(
                consume(self._spec, self.settings.kafka, wiring(self.settings), self._stop)
            )
        except BaseException as exc:  # reported by alive(), asserted by the tests
            self.error = exc

    def alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


@pytest.fixture(scope="module")
def settings(stack: None) -> ServiceSettings:
    return ServiceSettings()


@pytest.fixture(scope="module")
def proxies(settings: ServiceSettings) -> Iterator[Proxies]:
    made = Proxies(settings)
    yield made
    made.close()


@pytest.fixture(scope="module")
def frames_topic(settings: ServiceSettings) -> str:
    """A fresh frames topic (and its dead-letter twin) for this module."""
    topic = f"it-detres-frames-{uuid.uuid4().hex[:8]}"
    specs = [TopicSpec(topic, 2), TopicSpec(dead_letter_topic(topic), 1)]
    asyncio.run(ensure_topics(settings.kafka, specs))
    return topic


@pytest.fixture(scope="module")
def client_id(settings: ServiceSettings, model_version: str) -> Iterator[str]:
    """A fresh client on coco-centernet@production, without a frame-age budget."""
    client = f"it-{uuid.uuid4().hex[:8]}"
    store = ConfigStore(settings.postgres, settings.redis)
    store.put_client(client, client)
    store.put_client_config(
        ClientConfig(client_id=client, model_name="coco-centernet", max_frame_age_ms=NO_BUDGET_MS)
    )
    yield client
    store.delete_client(client)
    store.close()


@pytest.fixture(scope="module")
def detector(
    settings: ServiceSettings, proxies: Proxies, frames_topic: str, client_id: str
) -> Iterator[InProcessDetector]:
    """The detector, reaching Redis, Postgres and MLflow through ``proxies``, warmed up (its
    first frame detected)."""
    run = uuid.uuid4().hex[:8]
    detector_settings = DetectorSettings(
        kafka=settings.kafka,
        s3=settings.s3,
        postgres=PostgresSettings(dsn=SecretStr(proxies.dsn)),
        redis=RedisSettings(url=_via(settings.redis.url, proxies.redis.port)),
        mlflow=MlflowSettings(tracking_uri=_via(settings.mlflow.tracking_uri, proxies.mlflow.port)),
        group_id=f"it-detres-{run}",
        requests_group_id=f"it-detres-requests-{run}",
        alias_refresh_s=1.0,
        registry_timeout_s=3.0,
        config_timeout_s=1.0,
        metrics_port=None,
        torch_threads=1,
    )
    running = InProcessDetector(detector_settings, frames_topic)
    camera = f"warmup-{run}"
    publish(settings, frames_topic, client_id, camera, range(1))
    wait_for(lambda: annotated(settings, client_id, camera) == 1, 240, "the first detection")
    yield running
    proxies.restore_all()
    running.stop()


def jpeg(seq: int) -> bytes:
    image = np.full((240, 320, 3), (seq * 7) % 255, np.uint8)
    cv2.rectangle(image, (40, 40), (120, 200), (255, 255, 255), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


def publish(
    settings: ServiceSettings,
    topic: str,
    client_id: str,
    camera_id: str,
    seqs: range,
    every_s: float = 0.0,
) -> None:
    """Store a JPEG and publish its ``FrameDecoded`` on ``topic`` for each of ``seqs``,
    ``every_s`` apart (what a decoder does)."""
    store = ObjectStore(settings.s3)

    async def send() -> None:
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            for seq in seqs:
                now = time.time_ns()
                ref = FrameRef(
                    client_id=client_id, camera_id=camera_id, session_id=SESSION, frame_seq=seq
                )
                image = keys.frame_image(ref)
                await asyncio.to_thread(store.put, image.bucket, image.key, jpeg(seq), "image/jpeg")
                event = FrameDecoded(
                    **ref.model_dump(), capture_ts_ns=now, decoded_ts_ns=now,
                    width=320, height=240, image=image,
                )  # fmt: skip
                await producer.send_and_wait(topic, encode_event(event), key=camera_id.encode())
                await asyncio.sleep(every_s)
        finally:
            await producer.stop()

    asyncio.run(send())


def annotated(settings: ServiceSettings, client_id: str, camera_id: str) -> int:
    prefix = keys.camera_prefix(client_id, camera_id)
    return sum(1 for _ in ObjectStore(settings.s3).iter_keys(ANNOTATIONS_BUCKET, prefix))


def dead_letters(settings: ServiceSettings, topic: str, camera_id: str) -> list[DeadLetter]:
    """Every dead letter of ``camera_id`` in ``topic``'s dead-letter topic."""

    async def read() -> list[DeadLetter]:
        consumer = make_consumer(
            settings.kafka, f"check-{uuid.uuid4().hex[:8]}", dead_letter_topic(topic)
        )
        await consumer.start()
        found: list[DeadLetter] = []
        try:
            idle = 0
            while idle < 3:
                polled = await consumer.getmany(timeout_ms=1000, max_records=1000)
                records = [r for batch in polled.values() for r in batch]
                idle = 0 if records else idle + 1
                found += [
                    DeadLetter.model_validate_json(r.value or b"")
                    for r in records
                    if r.key == camera_id.encode()
                ]
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 0.5 s; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)
