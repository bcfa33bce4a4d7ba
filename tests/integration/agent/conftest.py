"""Fixtures for camera-agent tests against the real stack: agents as separate processes
(``python -m services.agent``, own consumer group and ids per test), a real RTSP server
playing vtest (79 s of H.264), heartbeats read back from ``agents.status.v1``, and frames
counted in S3.

Agents run every enabled camera of the test database, so each test's client is deleted
afterwards (cascading to its cameras) and leftovers of an interrupted run are removed
first: run these tests with a database of their own (``VIDPIPE_POSTGRES__DSN``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from botocore.config import Config
from redis import asyncio as aioredis

from infra.local.media import prepare_vtest
from infra.local.processes import ServiceProcess, free_port, start_service
from tests.integration.decoder.conftest import RtspServer
from vidpipe import keys
from vidpipe.agent_status import record_heartbeat
from vidpipe.bus import make_consumer
from vidpipe.cameras import CameraFields, UrlRules, create_camera
from vidpipe.configstore import ConfigStore
from vidpipe.control import announce_camera_change_sync
from vidpipe.db import clients
from vidpipe.events import AgentHeartbeat, CameraStatus, InvalidEvent, parse_event
from vidpipe.settings import CameraSettings, ServiceSettings
from vidpipe.topics import AGENTS_STATUS, FRAMES_BUCKET

REPO = Path(__file__).resolve().parents[3]
ASSETS = REPO / "var" / "assets"
LOGS = REPO / "var" / "log" / "tests"
#: Every test client id starts so (leftovers of an interrupted run are found by it).
CLIENT_PREFIX = "agt-"
#: Agents may connect to the test's RTSP servers on loopback, nothing else there.
LOOPBACK_CIDR = "127.0.0.1/32"
LOOPBACK = json.dumps([LOOPBACK_CIDR])


@pytest.fixture(scope="session")
def vtest_h264() -> Path:
    """vtest as H.264 MP4 (795 frames, 79.5 s at 10 fps; cached in var/assets)."""
    return prepare_vtest(ASSETS)[1]


@pytest.fixture
def rtsp(vtest_h264: Path, tmp_path: Path) -> Iterator[Callable[[], RtspServer]]:
    """``rtsp()``: a new RTSP server on a free port playing vtest to each client from its
    first frame; every server is stopped after the test."""
    servers: list[RtspServer] = []

    def start() -> RtspServer:
        port = free_port()
        server = RtspServer(vtest_h264, port, tmp_path / f"rtsp-{port}.log", mount="/cam")
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)  # a stopped server ignores SIGTERM
        server.stop()


@pytest.fixture
def client_id(stack: None, stack_settings: ServiceSettings) -> Iterator[str]:
    """A fresh client (deleted afterwards with its cameras and frames); clients of an
    interrupted earlier run are deleted first, so no agent runs their cameras."""
    store = ConfigStore(stack_settings.postgres, stack_settings.redis)
    objects = Frames(stack_settings)
    with store.engine.begin() as conn:
        stale = conn.execute(
            sa.select(clients.c.client_id).where(clients.c.client_id.like(f"{CLIENT_PREFIX}%"))
        ).scalars()
        for old in list(stale):
            conn.execute(sa.delete(clients).where(clients.c.client_id == old))
    client = f"{CLIENT_PREFIX}{uuid.uuid4().hex[:8]}"
    store.put_client(client, client)
    try:
        yield client
    finally:
        store.delete_client(client)
        store.close()
        objects.delete(client)


@dataclass
class Agents:
    """Agent processes of one test: one consumer group, ids ``{group}-{n}``."""

    settings: ServiceSettings
    group: str
    started: list[ServiceProcess] = field(default_factory=list)

    def start(self, **env: str) -> tuple[str, ServiceProcess]:
        agent_id = f"{self.group}-{len(self.started) + 1}"
        extra = {
            "VIDPIPE_GROUP_ID": self.group,
            "VIDPIPE_AGENT_ID": agent_id,
            "VIDPIPE_METRICS_PORT": str(free_port()),
            "VIDPIPE_CAMERAS__ALLOW": LOOPBACK,
            **{f"VIDPIPE_{k.upper()}": v for k, v in env.items()},
        }
        proc = start_service("agent", LOGS, extra, tag=f"-{agent_id}")
        self.started.append(proc)
        return agent_id, proc


@pytest.fixture
def agents(stack: None, stack_settings: ServiceSettings) -> Iterator[Agents]:
    """Starts agents in a consumer group of the test's own; stops them (SIGTERM) after."""
    made = Agents(stack_settings, f"agt-{uuid.uuid4().hex[:8]}")
    yield made
    for proc in made.started:
        proc.stop(timeout_s=30)


class HeartbeatWatch:
    """Reads ``agents.status.v1`` in a thread of its own (a consumer group of its own) and
    keeps the heartbeats of agents whose id starts with ``prefix``, each with its arrival
    time (``time.monotonic()``); ``redis_url``: also stored there like the status sink does.
    """

    def __init__(self, settings: ServiceSettings, prefix: str, redis_url: str | None = None):
        self._settings = settings
        self._prefix = prefix
        self._redis_url = redis_url
        self._lock = threading.Lock()
        self.beats: list[tuple[float, AgentHeartbeat]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "heartbeat consumer did not start"

    async def _run(self) -> None:
        consumer = make_consumer(self._settings.kafka, f"{self._prefix}-watch", AGENTS_STATUS)
        redis = aioredis.Redis.from_url(self._redis_url) if self._redis_url else None
        await consumer.start()
        self._ready.set()
        try:
            while not self._stop.is_set():
                polled = await consumer.getmany(timeout_ms=200)
                for record in (r for batch in polled.values() for r in batch):
                    if not (record.key or b"").decode().startswith(self._prefix):
                        continue
                    try:
                        beat = parse_event(AgentHeartbeat, record.value or b"")
                    except InvalidEvent:
                        continue
                    if redis is not None:
                        await record_heartbeat(redis, beat)
                    with self._lock:
                        self.beats.append((time.monotonic(), beat))
        finally:
            await consumer.stop()
            if redis is not None:
                await redis.aclose()  # type: ignore[attr-defined]  # types-redis predates it

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def latest(self, agent_id: str) -> AgentHeartbeat | None:
        with self._lock:
            found = [b for _, b in self.beats if b.agent_id == agent_id]
        return found[-1] if found else None

    def camera(self, camera_id: str, since: float = 0.0) -> list[tuple[float, str, CameraStatus]]:
        """``(arrival, agent id, status)`` of every report of ``camera_id`` after ``since``."""
        with self._lock:
            beats = [(t, b) for t, b in self.beats if t >= since]
        return [(t, b.agent_id, c) for t, b in beats for c in b.cameras if c.camera_id == camera_id]

    def reported(
        self, camera_id: str, state: str, since: float = 0.0, agent_id: str | None = None
    ) -> float | None:
        """Arrival of the first heartbeat after ``since`` reporting the camera in ``state``
        (from ``agent_id``, when given); None when there is none yet."""
        return next(
            (
                t
                for t, agent, status in self.camera(camera_id, since)
                if status.state == state and agent_id in (None, agent)
            ),
            None,
        )

    def wait(
        self, check: Callable[[], Any], timeout_s: float, what: str, step_s: float = 0.1
    ) -> Any:
        """``check()``'s first truthy result, polled until ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(step_s)
        pytest.fail(f"no {what} within {timeout_s} s; last heartbeats: {self.beats[-3:]}")


@pytest.fixture
def heartbeats(agents: Agents, stack_settings: ServiceSettings) -> Iterator[HeartbeatWatch]:
    watch = HeartbeatWatch(stack_settings, agents.group, stack_settings.redis.url)
    yield watch
    watch.close()


@dataclass(frozen=True)
class StoredFrame:
    key: str
    session: str
    etag: str
    modified: datetime


class Frames:
    """A camera's frames in S3, with what identifies each version of an object."""

    def __init__(self, settings: ServiceSettings) -> None:
        s3 = settings.s3
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            aws_access_key_id=s3.access_key.get_secret_value(),
            aws_secret_access_key=s3.secret_key.get_secret_value(),
            region_name=s3.region,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    def list(self, client_id: str, camera_id: str) -> list[StoredFrame]:
        """Every frame object of the camera: ``{client}/{camera}/{session}/{seq}.jpg``."""
        prefix = keys.camera_prefix(client_id, camera_id)
        found = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=FRAMES_BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                session = keys.parse_session(item["Key"], client_id, camera_id)
                assert session is not None, f"{item['Key']} is not under a session"
                found.append(StoredFrame(item["Key"], session, item["ETag"], item["LastModified"]))
        return found

    def new_session(self, client_id: str, camera_id: str, old: set[str]) -> StoredFrame | None:
        """A frame of a session not in ``old``, if one is stored."""
        return next((f for f in self.list(client_id, camera_id) if f.session not in old), None)

    def holds(self, client_id: str, camera_id: str, session: str, count: int) -> bool:
        """Whether at least ``count`` frames of ``session`` are stored."""
        return sum(f.session == session for f in self.list(client_id, camera_id)) >= count

    def delete(self, client_id: str) -> None:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=FRAMES_BUCKET, Prefix=f"{client_id}/"):
            chunk = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if chunk:
                self._client.delete_objects(
                    Bucket=FRAMES_BUCKET, Delete={"Objects": chunk, "Quiet": True}
                )


@pytest.fixture
def frames(stack: None, stack_settings: ServiceSettings) -> Frames:
    return Frames(stack_settings)


def add_camera(settings: ServiceSettings, client_id: str, camera_id: str, url: str) -> None:
    """Create the camera as the CLI does: the row committed, then the change announced."""
    rules = UrlRules.of(CameraSettings(allow=(LOOPBACK_CIDR,)), platform_admin=True)
    store = ConfigStore(settings.postgres, settings.redis)
    try:
        with store.engine.begin() as conn:
            fields = CameraFields(name=camera_id, url=url, fps=2.0)
            create_camera(conn, client_id, camera_id, fields, rules)
    finally:
        store.close()
    assert announce_camera_change_sync(settings.kafka, client_id, camera_id, "created")
