"""Two agents share four cameras by control partition; ``kill -9`` of one moves its cameras
to the other (Kafka's session timeout), where they stream again in new sessions. Also: a
camera's control events land in the partition the agents compute for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

import pytest
from aiokafka import TopicPartition
from typer.testing import CliRunner

from services.agent.ownership import control_partition
from tests.integration.agent.conftest import Agents, Frames, HeartbeatWatch, add_camera
from tests.integration.decoder.conftest import RtspServer
from vidpipe.bus import make_consumer, make_producer
from vidpipe.control import announce_camera_change
from vidpipe.events import CameraChanged, parse_event
from vidpipe.settings import ServiceSettings
from vidpipe.topics import CAMERAS_CONTROL
from vidpipe_cli.main import app

pytestmark = pytest.mark.integration

PARTITIONS = list(range(12))


def cameras_for(client_id: str, owners: dict[str, set[int]], each: int) -> dict[str, str]:
    """``each`` camera ids per agent whose control partitions that agent owns: id -> agent."""
    found: dict[str, str] = {}
    counts = dict.fromkeys(owners, 0)
    for n in range(10_000):
        camera = f"cam-{n}"
        partition = control_partition(client_id, camera, PARTITIONS)
        [owner] = [a for a, parts in owners.items() if partition in parts]
        if counts[owner] < each:
            found[camera] = owner
            counts[owner] += 1
        if all(c == each for c in counts.values()):
            return found
    raise AssertionError("no camera ids found")


def test_agents_when_owner_killed_then_its_cameras_stream_on_the_survivor_within_20_s(
    client_id: str,
    agents: Agents,
    heartbeats: HeartbeatWatch,
    frames: Frames,
    rtsp: Callable[[], RtspServer],
    stack_settings: ServiceSettings,
) -> None:
    server = rtsp()
    first, first_proc = agents.start()
    second, second_proc = agents.start()

    def split() -> dict[str, set[int]] | None:
        beats = {a: heartbeats.latest(a) for a in (first, second)}
        parts = {a: set(b.partitions) for a, b in beats.items() if b is not None}
        whole = len(parts) == 2 and all(parts.values())
        return parts if whole and set().union(*parts.values()) == set(PARTITIONS) else None

    owners = heartbeats.wait(split, 90, "both agents sharing the 12 partitions")
    cameras = cameras_for(client_id, owners, each=2)
    for camera in cameras:
        add_camera(stack_settings, client_id, camera, server.url)
    start = time.monotonic()
    for camera, owner in cameras.items():
        streaming = partial(heartbeats.reported, camera, "streaming", start, owner)
        heartbeats.wait(streaming, 30, f"{camera} streaming on {owner}")
    before = {c: {f.session for f in frames.list(client_id, c)} for c in cameras}

    first_proc.kill()  # SIGKILL: no leave-group, no last heartbeat
    killed = time.monotonic()
    moved: dict[str, float] = {}
    for camera in (c for c, owner in cameras.items() if owner == first):
        new_frame = partial(frames.new_session, client_id, camera, before[camera])
        heartbeats.wait(new_frame, 25, f"a frame of {camera} in a new session", step_s=0.25)
        moved[camera] = time.monotonic() - killed
    for camera in cameras:
        streaming = partial(heartbeats.reported, camera, "streaming", killed, second)
        heartbeats.wait(streaming, 30, f"{camera} streaming on {second}")
    survivor = heartbeats.latest(second)
    assert survivor is not None and set(survivor.partitions) == set(PARTITIONS)
    assert max(moved.values()) <= 20, moved

    terminated = time.monotonic()
    assert second_proc.stop(timeout_s=30) == 0, "SIGTERM: a clean exit"
    shutdown_s = time.monotonic() - terminated
    last = heartbeats.wait(
        lambda: (beat := heartbeats.latest(second)) is not None and beat.stopping and beat,
        10,
        "a last heartbeat marked stopping",
    )
    assert {c.camera_id for c in last.cameras} == set(cameras)
    assert {c.state for c in last.cameras} == {"stopped"}

    print(
        "\nfailover after kill -9: first frame on the survivor "
        + ", ".join(f"{c} {s:.1f} s" for c, s in moved.items())
        + f" (<= 20 s; session timeout 10 s); SIGTERM of the survivor with 4 cameras: exit"
        f" after {shutdown_s:.1f} s, last heartbeat marked stopping"
    )


async def test_control_events_when_announced_or_cli_edits_then_in_the_partition_agents_compute(
    client_id: str, stack_settings: ServiceSettings
) -> None:
    producer = make_producer(stack_settings.kafka)
    consumer = make_consumer(stack_settings.kafka, f"{client_id}-probe")
    await producer.start()
    await consumer.start()
    try:
        partitions = sorted(await producer.partitions_for(CAMERAS_CONTROL))
        assert partitions == PARTITIONS
        cameras = [f"cam-{n}" for n in range(6)]
        for camera in cameras:
            assert await announce_camera_change(producer, client_id, camera, "updated")
        cli = CliRunner()
        for args in (
            ["add", "cli-cam", "--url", "file:///var/none.mp4", "--fps", "1"],
            ["update", "cli-cam", "--no-enabled"],
            ["remove", "cli-cam"],
        ):
            argv = ["cameras", *args, "--client", client_id]
            done = await asyncio.to_thread(cli.invoke, app, argv)
            assert done.exit_code == 0, done.output
        wanted = {c: control_partition(client_id, c, partitions) for c in [*cameras, "cli-cam"]}
        consumer.assign([TopicPartition(CAMERAS_CONTROL, p) for p in set(wanted.values())])
        found: dict[str, int] = {}
        cli_actions: list[str] = []
        deadline = time.monotonic() + 30
        while len(cli_actions) < 3 and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=500)
            for record in (r for batch in polled.values() for r in batch):
                event = parse_event(CameraChanged, record.value or b"")
                if event.client_id == client_id:
                    found[event.camera_id] = record.partition
                    if event.camera_id == "cli-cam":
                        cli_actions.append(event.action)
        assert found == wanted
        assert cli_actions == ["created", "disabled", "deleted"]
    finally:
        await consumer.stop()
        await producer.stop()
