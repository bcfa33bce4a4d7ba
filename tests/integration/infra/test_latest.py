"""The latest-frame pointer on the real Redis: forward-only in capture time, per camera,
and a Redis outage costs the pointer an update, never the caller an exception."""

from __future__ import annotations

import socket
import uuid

from redis import Redis

from tests.unit.fakes import SESSION, decoded
from vidpipe.events import FrameDecoded
from vidpipe.latest import POINTER_FAILURES, LatestFrames, pointer_key, read_latest
from vidpipe.settings import RedisSettings, ServiceSettings


def frame(camera: str, seq: int, ts: int, session: str = SESSION) -> FrameDecoded:
    return decoded("acme", camera, seq, ts, session)


async def test_advance_when_older_frame_arrives_later_then_pointer_stays(
    stack: None, stack_settings: ServiceSettings
) -> None:
    camera, other = f"cam-{uuid.uuid4().hex[:8]}", f"cam-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(stack_settings.redis.url)
    pointer = LatestFrames(stack_settings.redis)
    try:
        assert read_latest(redis, "acme", camera) is None
        await pointer.advance([frame(camera, 7, 700), frame(other, 1, 100)])
        # a replayed or slow batch with an older capture does not move it back
        await pointer.advance([frame(camera, 9, 650)])
        assert read_latest(redis, "acme", camera) == (SESSION, 7)
        # a restarted decoder's newer frame (a new session) moves it, though its seq is lower
        await pointer.advance([frame(camera, 0, 800, "20261201t130000-0b0b")])
        assert read_latest(redis, "acme", camera) == ("20261201t130000-0b0b", 0)
        assert read_latest(redis, "acme", other) == (SESSION, 1)
    finally:
        await pointer.aclose()
        redis.delete(pointer_key("acme", camera), pointer_key("acme", other))
        redis.close()


async def test_advance_when_redis_unreachable_then_counted_not_raised() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pointer = LatestFrames(RedisSettings(url=f"redis://127.0.0.1:{port}/0"), timeout_s=0.5)
    before = POINTER_FAILURES._value.get()
    await pointer.advance([frame("cam-x", 1, 100), frame("cam-y", 1, 100)])
    await pointer.aclose()
    assert POINTER_FAILURES._value.get() == before + 2
