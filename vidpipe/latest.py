"""The latest-frame pointer: per camera, the newest frame that has detections, in Redis.

The dashboard's latest-frame view and its live stream read one small hash per camera
instead of listing every annotation key of the camera on each request (a listing grows with
the camera's history, the pointer does not). The detector advances it after a frame's
annotation document is stored, so the pointer never names a frame without one.

Layout: hash ``vidpipe:latest-frame:{client}/{camera}`` with fields ``session`` (stream
session id), ``seq`` (frame_seq) and ``capture_ts_ns`` (ns since the epoch). It only moves
forward in capture time (a Lua compare-and-set), so a replay, a slow replica or a batch
finishing out of order never moves it back; a decoder restart (a new session numbering its
frames from 0) still moves it, because its frames are newer.

The pointer is an index, not the truth: S3 is. When Redis is down the detector counts the
missed update (``vidpipe_latest_pointer_failures_total``) and goes on, and readers fall back
to listing (:func:`services.dashboard.results.latest_frame`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from prometheus_client import Counter
from redis import Redis
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from vidpipe.events import FrameDecoded
from vidpipe.settings import RedisSettings

log = logging.getLogger(__name__)

POINTER_FAILURES = Counter(
    "vidpipe_latest_pointer_failures_total",
    "Latest-frame pointer updates lost to Redis errors (readers fall back to listing)",
)

_PREFIX = "vidpipe:latest-frame:"

#: KEYS[1] the camera's hash; ARGV[1] capture_ts_ns, ARGV[2] seq, ARGV[3] session. Moves
#: forward only.
_ADVANCE = """
local current = redis.call('HGET', KEYS[1], 'capture_ts_ns')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'capture_ts_ns', ARGV[1], 'seq', ARGV[2], 'session', ARGV[3])
return 1
"""


def pointer_key(client_id: str, camera_id: str) -> str:
    """The Redis key of one camera's pointer."""
    return f"{_PREFIX}{client_id}/{camera_id}"


def newest_per_camera(frames: Iterable[FrameDecoded]) -> list[FrameDecoded]:
    """The frame with the latest ``capture_ts_ns`` of each (client, camera) in ``frames``."""
    newest: dict[tuple[str, str], FrameDecoded] = {}
    for frame in frames:
        key = (frame.client_id, frame.camera_id)
        if key not in newest or frame.capture_ts_ns > newest[key].capture_ts_ns:
            newest[key] = frame
    return list(newest.values())


class LatestFrames:
    """Advances the pointers (async; the detector's side)."""

    def __init__(
        self, settings: RedisSettings, timeout_s: float = 0.5, pause_s: float = 5.0
    ) -> None:
        self._redis = aioredis.Redis.from_url(
            settings.url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # a lost update costs nothing; a slow one a batch
        )
        self._advance = self._redis.register_script(_ADVANCE)
        self._pause_s = pause_s
        self._paused_until = 0.0

    async def advance(self, frames: Iterable[FrameDecoded]) -> None:
        """Point each camera of ``frames`` at its newest frame, if newer than the pointer.

        Call only after the frames' annotation documents are stored. Never raises for
        Redis errors: they are logged and counted, and the pointer stays where it was.
        After a failure, updates are skipped (counted) for ``pause_s``, so an unreachable or
        hanging Redis costs the detector one ``timeout_s`` per pause, not one per batch.
        """
        for frame in newest_per_camera(frames):
            if time.monotonic() < self._paused_until:
                POINTER_FAILURES.inc()
                continue
            try:
                await self._advance(
                    keys=[pointer_key(frame.client_id, frame.camera_id)],
                    args=[frame.capture_ts_ns, frame.frame_seq, frame.session_id],
                )
            except RedisError as exc:
                POINTER_FAILURES.inc()
                self._paused_until = time.monotonic() + self._pause_s
                log.warning(
                    "latest-frame pointer not advanced (updates paused %.0f s): %s",
                    self._pause_s,
                    exc,
                    extra={"client_id": frame.client_id, "camera_id": frame.camera_id},
                )

    async def aclose(self) -> None:
        # types-redis predates redis 5's aclose (close() is deprecated since)
        await self._redis.aclose()  # type: ignore[attr-defined]


def read_latest(redis: Redis, client_id: str, camera_id: str) -> tuple[str, int] | None:
    """``(session_id, frame_seq)`` of the frame the camera's pointer names, or None when it
    has none (or only a pointer written before frames had sessions).

    Raises:
        redis.exceptions.RedisError: Redis unreachable or timing out (callers fall back).
    """
    session, seq = redis.hmget(pointer_key(client_id, camera_id), ["session", "seq"])
    if session is None or seq is None:
        return None
    return (session.decode() if isinstance(session, bytes) else str(session)), int(seq)
