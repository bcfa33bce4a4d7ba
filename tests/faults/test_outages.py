"""S3, MLflow, Redis or Postgres unreachable for 10 s (short) / 30 s (full) while frames
flow at 2 fps through a detector and a renderer run as processes: no process exits, no
frame of the scenario's camera is dead-lettered, every frame is annotated and rendered
once the dependency is back, and both consumer groups end with lag 0.

Both processes reach every one of the four dependencies through a :class:`TcpProxy` of
its own (module-wide, started once); each case cuts one. Frames are published the way the
decoder does it (JPEG to the real S3, ``FrameDecoded`` to Kafka), never through a proxy.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
from aiokafka import TopicPartition
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.local.processes import ServiceProcess, free_port
from tests.faults.conftest import report, scaled
from tests.faults.counts import end_offsets, group_lag, start_group_at_end
from tests.faults.proxy import TcpProxy
from tests.integration.pipeline.conftest import Services, wait_for
from vidpipe import keys
from vidpipe.bus import make_consumer, make_producer
from vidpipe.configstore import ConfigStore
from vidpipe.decoding.publisher import DecoderService
from vidpipe.events import DeadLetter
from vidpipe.objectstore import ObjectStore
from vidpipe.settings import ServiceSettings
from vidpipe.topics import (
    ANNOTATIONS_BUCKET,
    DETECTIONS,
    FRAMES_DECODED,
    RENDERS_BUCKET,
    REQUESTS,
    REQUESTS_DONE,
    dead_letter_topic,
)

FPS = 2.0
DEPENDENCIES = ("s3", "redis", "postgres", "mlflow")
DEAD_LETTER_TOPICS = (dead_letter_topic(FRAMES_DECODED), dead_letter_topic(DETECTIONS))
#: Dead letters other people's detectors write for this camera: a detector of another test
#: session, in a fresh consumer group on the shared frames topic and on a database of its
#: own, does not know this client. Ours cannot: the client is in our database, and a frame
#: our detector dead-lettered would never be annotated (asserted below).
FOREIGN = frozenset({"unknown_client"})


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", int(parts.port or 0)


def _via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by ``127.0.0.1:port`` (credentials kept)."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{user[0]}@{host}" if len(user) == 2 else host))


@dataclass
class Pipeline:
    """The detector and renderer processes, their consumer groups and the proxies they
    reach their dependencies through."""

    proxies: dict[str, TcpProxy]
    detector: ServiceProcess
    renderer: ServiceProcess
    detector_group: str
    renderer_group: str
    dead_letter_starts: dict[str, dict[int, int]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def pipeline(stack: None, model_version: str) -> Iterator[Pipeline]:
    settings = ServiceSettings()
    dsn = conninfo_to_dict(settings.postgres.dsn.get_secret_value())
    proxies = {
        "s3": TcpProxy(*_host_port(settings.s3.endpoint_url)),
        "redis": TcpProxy(*_host_port(settings.redis.url)),
        "postgres": TcpProxy(
            str(dsn.get("host") or "127.0.0.1"), int(str(dsn.get("port") or 5432))
        ),
        "mlflow": TcpProxy(*_host_port(settings.mlflow.tracking_uri)),
    }
    for proxy in proxies.values():
        proxy.start()
    via_dsn = {k: str(v) for k, v in dsn.items() if v is not None}
    via_dsn.update(host="127.0.0.1", port=str(proxies["postgres"].port))
    through = {
        "VIDPIPE_S3__ENDPOINT_URL": _via(settings.s3.endpoint_url, proxies["s3"].port),
        "VIDPIPE_REDIS__URL": _via(settings.redis.url, proxies["redis"].port),
        "VIDPIPE_POSTGRES__DSN": make_conninfo("", **via_dsn),
        "VIDPIPE_MLFLOW__TRACKING_URI": _via(settings.mlflow.tracking_uri, proxies["mlflow"].port),
    }
    tag = uuid.uuid4().hex[:8]
    detector_group, requests_group = f"faults-out-detector-{tag}", f"faults-out-req-{tag}"
    renderer_group = f"faults-out-renderer-{tag}"
    for group, topic in (
        (detector_group, FRAMES_DECODED),
        (requests_group, REQUESTS),
        (renderer_group, DETECTIONS),
        (renderer_group, REQUESTS_DONE),
    ):
        asyncio.run(start_group_at_end(settings, group, topic))
    services = Services()
    try:
        detector = services.start(
            "detector",
            **through,
            VIDPIPE_GROUP_ID=detector_group,
            VIDPIPE_REQUESTS_GROUP_ID=requests_group,
            VIDPIPE_MAX_FRAME_AGE_MS="3600000",
            VIDPIPE_BATCH_SIZE="4",
            VIDPIPE_ALIAS_REFRESH_S="1",  # the registry is asked often enough to see it gone
            VIDPIPE_METRICS_PORT=str(free_port()),
        )
        renderer = services.start(
            "renderer",
            **through,
            VIDPIPE_GROUP_ID=renderer_group,
            VIDPIPE_METRICS_PORT=str(free_port()),
        )
        yield Pipeline(proxies, detector, renderer, detector_group, renderer_group)
    finally:
        for proxy in proxies.values():
            proxy.restore()
        services.stop_all()
        for proxy in proxies.values():
            proxy.stop()


@dataclass
class Sample:
    at: float
    annotated: int
    rendered: int


class Sampler:
    """Counts the camera's annotations and rendered frames in the real S3 once a second,
    in a thread, until stopped."""

    def __init__(self, settings: ServiceSettings, client_id: str, camera_id: str) -> None:
        self._store = ObjectStore(settings.s3)
        self._prefix = keys.camera_prefix(client_id, camera_id)
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")

    def count(self) -> Sample:
        annotated = sum(
            1
            for k in self._store.iter_keys(ANNOTATIONS_BUCKET, self._prefix)
            if k.endswith(".json")
        )
        rendered = sum(
            1 for k in self._store.iter_keys(RENDERS_BUCKET, self._prefix) if k.endswith(".jpg")
        )
        return Sample(time.monotonic(), annotated, rendered)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.count())
            self._stop.wait(1.0)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


@dataclass
class Timeline:
    cut_at: float = 0.0
    restored_at: float = 0.0
    published_at_cut: int = 0
    published_at_restore: int = 0
    published: int = 0


async def publish_through_cut(
    settings: ServiceSettings,
    client_id: str,
    camera_id: str,
    frames: list[np.ndarray],
    proxy: TcpProxy,
    before_s: float,
    cut_s: float,
    after_s: float,
    on_cut: Callable[[], None] = lambda: None,
) -> Timeline:
    """Publish ``frames`` (cycled) at :data:`FPS` for ``before_s + cut_s + after_s`` s, with
    ``proxy`` cut from ``before_s`` for ``cut_s`` s (``on_cut`` called right after the cut);
    returns when and how many."""
    timeline = Timeline()
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        decoder = DecoderService(ObjectStore(settings.s3), producer, client_id, camera_id)
        pending = []
        start = time.monotonic()
        end = start + before_s + cut_s + after_s
        seq = 0
        while (now := time.monotonic()) < end:
            if not timeline.cut_at and now >= start + before_s:
                await asyncio.to_thread(proxy.cut)
                await asyncio.to_thread(on_cut)
                timeline.cut_at, timeline.published_at_cut = time.monotonic(), seq
            if not timeline.restored_at and now >= start + before_s + cut_s:
                proxy.restore()
                timeline.restored_at, timeline.published_at_restore = time.monotonic(), seq
            image = frames[seq % len(frames)]
            pending.append(await decoder.handle_frame(seq, image, time.time_ns()))
            seq += 1
            await asyncio.sleep(max(0.0, start + seq / FPS - time.monotonic()))
        await asyncio.gather(*pending)
        timeline.published = seq
    finally:
        proxy.restore()
        await producer.stop()
    return timeline


async def dead_letters_since(
    settings: ServiceSettings, topic: str, starts: dict[int, int], camera_id: str
) -> list[DeadLetter]:
    """Dead letters of ``camera_id`` in ``topic`` from the offsets ``starts`` to the end."""
    ends = await end_offsets(settings, topic)
    consumer = make_consumer(settings.kafka, f"faults-dlq-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    found: list[DeadLetter] = []
    try:
        parts = [TopicPartition(topic, p) for p, end in ends.items() if end > starts.get(p, 0)]
        if not parts:
            return found
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, starts.get(tp.partition, 0))
        left = {tp: ends[tp.partition] for tp in parts}
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for tp, records in polled.items():
                for r in records:
                    if r.key == camera_id.encode():
                        found.append(DeadLetter.model_validate_json(r.value or b""))
                    if r.offset + 1 >= left.get(tp, 0):
                        left.pop(tp, None)
        assert not left, f"could not read {topic} to its end: {left}"
    finally:
        await consumer.stop()
    return found


def _evict_cached_config(settings: ServiceSettings, client_id: str) -> None:
    """Drop the client's config from the Redis cache, so the detector's next read misses it
    and goes to Postgres (otherwise a Postgres outage goes unnoticed behind the cache)."""
    store = ConfigStore(settings.postgres, settings.redis)
    try:
        store.invalidate(client_id)
    finally:
        store.close()


def _caught_up(settings: ServiceSettings, group: str, topic: str) -> bool:
    return asyncio.run(group_lag(settings, group, topic)) == 0


def _first_at_or_after(samples: list[Sample], at: float) -> Sample | None:
    return next((s for s in samples if s.at >= at), None)


@pytest.mark.parametrize("dependency", DEPENDENCIES)
def test_pipeline_when_dependency_unreachable_then_no_exit_no_dead_letter_all_processed(
    pipeline: Pipeline,
    client_id: str,
    vtest_frames: list[np.ndarray],
    settings: ServiceSettings,
    dependency: str,
) -> None:
    # given the detector and renderer running, and a camera of this case
    camera = f"{client_id}-{dependency}-{uuid.uuid4().hex[:4]}"
    starts = {t: asyncio.run(end_offsets(settings, t)) for t in DEAD_LETTER_TOPICS}
    before_s, cut_s, after_s = scaled(5, 10), scaled(10, 30), scaled(5, 10)
    # when frames flow at 2 fps before, during and after the dependency is unreachable
    with Sampler(settings, client_id, camera) as sampler:
        timeline = asyncio.run(
            publish_through_cut(
                settings,
                client_id,
                camera,
                vtest_frames,
                pipeline.proxies[dependency],
                before_s,
                cut_s,
                after_s,
                on_cut=(lambda: _evict_cached_config(settings, client_id))
                if dependency == "postgres"
                else (lambda: None),
            )
        )
        total = timeline.published
        wait_for(
            lambda: (c := sampler.count()).annotated == total and c.rendered == total,
            300,
            f"all {total} frames annotated and rendered after the {dependency} outage",
        )
    # then no process exited, nothing was dead-lettered, and both groups caught up
    assert pipeline.detector.alive(), f"the detector exited ({pipeline.detector.log_path})"
    assert pipeline.renderer.alive(), f"the renderer exited ({pipeline.renderer.log_path})"
    letters = [
        letter
        for topic in DEAD_LETTER_TOPICS
        for letter in asyncio.run(dead_letters_since(settings, topic, starts[topic], camera))
    ]
    ours = [d for d in letters if d.error_type not in FOREIGN]
    assert ours == [], [(d.service, d.error_type, d.reason) for d in ours]
    for group, topic in (
        (pipeline.detector_group, FRAMES_DECODED),
        (pipeline.renderer_group, DETECTIONS),
    ):
        wait_for(
            functools.partial(_caught_up, settings, group, topic),
            120,
            f"{group} lag 0",
        )
    # figures: frames processed while it was away, seconds to catch up after it was back
    at_cut = _first_at_or_after(sampler.samples, timeline.cut_at)
    at_restore = _first_at_or_after(sampler.samples, timeline.restored_at)
    caught_up = next(
        (
            s
            for s in sampler.samples
            if s.at >= timeline.restored_at
            and s.annotated >= timeline.published_at_restore
            and s.rendered >= timeline.published_at_restore
        ),
        None,
    )
    report(
        f"outage_{dependency}",
        cut_s=cut_s,
        fps=FPS,
        frames=total,
        published_during_cut=timeline.published_at_restore - timeline.published_at_cut,
        annotated_during_cut=(at_restore.annotated - at_cut.annotated)
        if at_cut and at_restore
        else None,
        rendered_during_cut=(at_restore.rendered - at_cut.rendered)
        if at_cut and at_restore
        else None,
        catch_up_s=round(caught_up.at - timeline.restored_at, 1) if caught_up else None,
        annotated=total,
        rendered=total,
        dead_letters=len(ours),
        foreign_dead_letters=len(letters) - len(ours),
        lag_at_end=0,
        detector_alive=True,
        renderer_alive=True,
    )
