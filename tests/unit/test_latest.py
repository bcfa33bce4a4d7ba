"""The latest-frame pointer's pure part: which frame of each camera a batch offers."""

from __future__ import annotations

from typing import Any

from redis.exceptions import TimeoutError as RedisTimeout

from tests.unit.fakes import decoded
from vidpipe.events import FrameDecoded
from vidpipe.latest import LatestFrames, newest_per_camera, pointer_key
from vidpipe.settings import RedisSettings


def frame(camera: str, seq: int, ts: int, client: str = "acme") -> FrameDecoded:
    return decoded(client, camera, seq, ts)


def test_newest_per_camera_when_batch_mixes_cameras_then_latest_capture_of_each() -> None:
    frames = [frame("a", 5, 50), frame("a", 3, 70), frame("b", 9, 10), frame("a", 4, 60)]
    frames.append(frame("a", 1, 99, client="other"))
    newest = {(f.client_id, f.camera_id): f.frame_seq for f in newest_per_camera(frames)}
    # capture time decides, not seq (a restarted decoder numbers from 0 again)
    assert newest == {("acme", "a"): 3, ("acme", "b"): 9, ("other", "a"): 1}


def test_pointer_key_carries_client_and_camera() -> None:
    assert pointer_key("acme", "cam-1") == "vidpipe:latest-frame:acme/cam-1"
    assert pointer_key("acme", "cam-1") != pointer_key("other", "cam-1")


async def test_advance_when_redis_fails_then_updates_paused_not_retried_per_batch() -> None:
    # given a Redis that times out
    latest = LatestFrames(RedisSettings(url="redis://127.0.0.1:1/0"), pause_s=60)
    calls: list[Any] = []

    async def timing_out(**kwargs: Any) -> None:
        calls.append(kwargs)
        raise RedisTimeout("Timeout reading from socket")

    latest._advance = timing_out  # type: ignore[assignment]
    # when three batches advance pointers / then only the first one waits for Redis
    for seq in range(3):
        await latest.advance([frame("cam-1", seq, 10 + seq)])
    assert len(calls) == 1
    await latest.aclose()
