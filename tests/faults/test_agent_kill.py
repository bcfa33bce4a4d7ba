"""A camera agent (``python -m services.agent``) streaming two cameras is killed (SIGKILL)
mid-stream and restarted, once short / three times full: every JPEG stored under the
cameras' prefixes has its ``FrameDecoded`` event on the frames topic (matched by image key)
or is counted as an orphan of the killed session. Orphans are a JPEG put to S3 whose event
was still in flight at the kill: the decoder keeps up to ``MAX_IN_FLIGHT`` sends in flight
(by design, for throughput), so at most that many (plus the frame being put) per camera
and killed session; the retention janitor
(``services/janitor``) removes them with the session's other frames. A session stopped
cleanly (SIGTERM) leaves none."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from tests.faults.conftest import report, scaled
from tests.faults.counts import end_offsets, read_since
from tests.integration.agent import conftest as agent_fixtures
from tests.integration.agent.conftest import LOOPBACK_CIDR, Agents, Frames, HeartbeatWatch
from tests.integration.decoder.conftest import RtspServer
from vidpipe.cameras import CameraFields, UrlRules, create_camera
from vidpipe.configstore import ConfigStore
from vidpipe.control import announce_camera_change_sync
from vidpipe.decoding.stream import MAX_IN_FLIGHT
from vidpipe.events import FrameDecoded
from vidpipe.settings import CameraSettings, ServiceSettings
from vidpipe.topics import FRAMES_DECODED

# the camera-agent fixtures (a client of their own, agents in a group of their own, RTSP)
client_id = agent_fixtures.client_id
agents = agent_fixtures.agents
heartbeats = agent_fixtures.heartbeats
frames = agent_fixtures.frames
rtsp = agent_fixtures.rtsp
vtest_h264 = agent_fixtures.vtest_h264

FPS = 10.0  # vtest's own rate: the most sends in flight a camera makes
#: Orphans one camera's killed session can leave: the sends in flight, plus the frame whose
#: JPEG was put while its send was not yet enqueued.
BOUND = MAX_IN_FLIGHT + 1


def add_camera(settings: ServiceSettings, client: str, camera: str, url: str) -> None:
    """Create the camera at :data:`FPS` as the CLI does: committed, then announced."""
    rules = UrlRules.of(CameraSettings(allow=(LOOPBACK_CIDR,)), platform_admin=True)
    store = ConfigStore(settings.postgres, settings.redis)
    try:
        with store.engine.begin() as conn:
            create_camera(conn, client, camera, CameraFields(name=camera, url=url, fps=FPS), rules)
    finally:
        store.close()
    assert announce_camera_change_sync(settings.kafka, client, camera, "created")


def test_agent_when_killed_mid_stream_then_every_stored_frame_has_its_event_or_is_a_bounded_orphan(
    client_id: str,
    agents: Agents,
    heartbeats: HeartbeatWatch,
    frames: Frames,
    rtsp: Callable[[], RtspServer],
    stack_settings: ServiceSettings,
) -> None:
    kills = scaled(1, 3)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    settings = stack_settings
    topic_start = asyncio.run(end_offsets(settings, FRAMES_DECODED))
    server = rtsp()
    cameras = [f"{client_id}-cam{n}" for n in range(2)]
    for camera in cameras:
        add_camera(settings, client_id, camera, server.url)
    started = time.monotonic()
    seen: set[str] = set()

    def run_until(count: int, what: str) -> set[str]:
        """Each camera's new session (not in ``seen``) holding ``count`` frames."""
        new: set[str] = set()
        for camera in cameras:

            def stored(camera: str = camera) -> str | None:
                fresh = [f.session for f in frames.list(client_id, camera) if f.session not in seen]
                counts = {s: fresh.count(s) for s in fresh}
                return next((s for s, n in counts.items() if n >= count), None)

            new.add(heartbeats.wait(stored, 90, f"{what}: {count} frames of {camera}", 0.25))
        seen.update(new)
        return new

    killed_sessions: list[set[str]] = []
    for k in range(kills):
        _, proc = agents.start()
        killed_sessions.append(run_until(rng.randint(5, 30), f"kill {k}"))
        proc.kill()  # SIGKILL mid-stream: sends in flight are never acknowledged
    _, proc = agents.start()
    clean = run_until(10, "after the kills")
    assert proc.stop(timeout_s=30) == 0, "SIGTERM: a clean exit"
    agents.started.remove(proc)

    decoded = {
        FrameDecoded.model_validate_json(value).image.key
        for key, value in asyncio.run(read_since(settings, FRAMES_DECODED, topic_start))
        if key.decode() in cameras
    }
    stored = [f for camera in cameras for f in frames.list(client_id, camera)]
    orphans = [f for f in stored if f.key not in decoded]
    per_kill = [sum(f.session in sessions for f in orphans) for sessions in killed_sessions]
    in_clean = [f.key for f in orphans if f.session in clean]
    assert not in_clean, f"frames of a cleanly stopped session without events: {in_clean[:5]}"
    assert sum(per_kill) == len(orphans), "orphans outside the killed sessions"
    assert all(n <= BOUND * len(cameras) for n in per_kill), per_kill
    report(
        "agent_kill",
        cameras=len(cameras),
        fps=FPS,
        kills=kills,
        seed=seed,
        stored_frames=len(stored),
        events=len(decoded),
        orphans_per_kill=per_kill,
        orphan_bound_per_kill=BOUND * len(cameras),
        orphans_clean_stop=len(in_clean),
        seconds=round(time.monotonic() - started, 1),
    )
