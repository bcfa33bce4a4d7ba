"""Throttling: rate limits (the ``limits`` library, moving windows counted in Redis, so every
replica shares them) and a bound on concurrent live streams per caller.

- sign-in: every attempt counts, per account (the e-mail, hashed) and per client address,
  before the password is checked, so a throttled attempt costs no argon2 hash;
- API keys: failed authentications per client address; once over, even a valid key from
  that address waits (the lookup is not run);
- expensive routes (listing storage or the registry, queuing jobs): calls per user or key;
- on-demand detection requests: per client (all its users and keys together);
- live streams: at most N open per user or key (a Redis sorted set of open streams, each
  forgotten after the longest a stream lasts, should a process die holding one).

Over a limit: :class:`~services.dashboard.errors.TooManyRequests` (429 with ``Retry-After``).
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid

from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis

from services.dashboard.auth import Principal
from services.dashboard.errors import TooManyRequests
from services.dashboard.settings import DashboardSettings

_PREFIX = "vidpipe-limits"
_LIVE = "vidpipe:live:"


def caller_key(principal: Principal) -> str:
    """What a per-caller limit counts: the user, or the API key."""
    return (
        f"user:{principal.user_id}" if principal.user_id is not None else f"key:{principal.key_id}"
    )


class Throttle:
    """The dashboard's rate limits (see the module doc). Blocking: call from worker threads."""

    def __init__(self, settings: DashboardSettings) -> None:
        storage = RedisStorage(settings.redis.url, key_prefix=_PREFIX)
        self._limiter = MovingWindowRateLimiter(storage)
        self._login_account = parse(settings.limit_login_account)
        self._login_ip = parse(settings.limit_login_ip)
        self._bad_keys_ip = parse(settings.limit_bad_keys_ip)
        self._expensive = parse(settings.limit_expensive)
        self._requests = parse(settings.limit_requests_client)

    def _hit(self, item: RateLimitItem, what: str, *keys: str) -> None:
        if self._limiter.hit(item, what, *keys):
            return
        reset = self._limiter.get_window_stats(item, what, *keys).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise TooManyRequests(f"too many {what} requests; try again in {wait} s", wait)

    def sign_in(self, address: str, email: str) -> None:
        """Count a sign-in attempt. Raises TooManyRequests over either limit."""
        account = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        self._hit(self._login_ip, "sign-in", "ip", address)
        self._hit(self._login_account, "sign-in", "account", account)

    def check_api_keys(self, address: str) -> None:
        """Raises TooManyRequests when ``address`` has failed too many key checks lately."""
        if not self._limiter.test(self._bad_keys_ip, "api-key", address):
            reset = self._limiter.get_window_stats(self._bad_keys_ip, "api-key", address)
            wait = max(1, math.ceil(reset.reset_time - time.time()))
            raise TooManyRequests(f"too many failed API keys; try again in {wait} s", wait)

    def bad_api_key(self, address: str) -> None:
        """Count a failed key check (never raises: the caller answers 401)."""
        self._limiter.hit(self._bad_keys_ip, "api-key", address)

    def expensive(self, principal: Principal) -> None:
        """Count a call of an expensive route. Raises TooManyRequests over the limit."""
        self._hit(self._expensive, "expensive", caller_key(principal))

    def detection_request(self, client_id: str) -> None:
        """Count an on-demand request of ``client_id``. Raises TooManyRequests over the
        limit."""
        self._hit(self._requests, "detection", client_id)


class LiveSlots:
    """At most ``limit`` open live streams per caller; a slot unreleased after
    ``max_hold_s`` seconds (a dead process) is forgotten."""

    def __init__(self, redis: Redis, limit: int, max_hold_s: float) -> None:
        self._redis = redis
        self._limit = limit
        self._max_hold_s = max_hold_s

    def acquire(self, who: str) -> str:
        """A slot token for ``who``. Raises TooManyRequests when all slots are taken."""
        key, token, now = _LIVE + who, uuid.uuid4().hex, time.time()
        pipe = self._redis.pipeline()
        pipe.zremrangebyscore(key, 0, now - self._max_hold_s)
        pipe.zadd(key, {token: now})
        pipe.zcard(key)
        pipe.expire(key, math.ceil(self._max_hold_s))
        held = pipe.execute()[2]
        if held > self._limit:
            self._redis.zrem(key, token)
            raise TooManyRequests(
                f"{self._limit} live streams are open for you already; close one first", 30
            )
        return token

    def release(self, who: str, token: str) -> None:
        self._redis.zrem(_LIVE + who, token)
