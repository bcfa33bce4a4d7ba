"""Server-side sessions in Redis, behind ``request.session`` (a dict, as Starlette's).

The cookie holds only a random id (256 bits); Redis holds the session under the id's
SHA-256, so a copy of Redis yields no usable cookie. A session ends:

- on sign-out (the session is deleted: replaying the old cookie gets nothing);
- when unused for ``idle_s`` seconds (the Redis TTL, refreshed on every request), and
  ``max_age_s`` seconds after it started, whatever its use;
- when its user's sessions are revoked (password change, "sign out everywhere", an admin,
  the user disabled): every session of a user is indexed under the user's id.

The id changes whenever the signed-in user does (sign-in, sign-out): no session fixation.
A session is saved only when it holds something; a revoked session is never re-created by a
request that was in flight when it was revoked (saves of an existing session only update).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from redis import Redis
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_SESSION = "vidpipe:session:"
_USER = "vidpipe:user-sessions:"
#: an anonymous session (a sign-in form's CSRF token) lives at most this long unused
ANONYMOUS_IDLE_S = 1800


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Stored:
    data: dict[str, Any]
    created: float
    uid: int | None


class SessionStore:
    """Sessions in Redis (blocking client: call from worker threads)."""

    def __init__(self, redis: Redis, idle_s: int, max_age_s: int) -> None:
        self._redis = redis
        self.idle_s = idle_s
        self.max_age_s = max_age_s

    def load(self, session_id: str) -> Stored | None:
        """The session, or None when it is unknown, expired or past ``max_age_s``."""
        key = _SESSION + _digest(session_id)
        raw = self._redis.get(key)
        if raw is None:
            return None
        stored = json.loads(raw)
        if time.time() - stored["created"] > self.max_age_s:
            self.delete(session_id, stored.get("uid"))
            return None
        return Stored(stored["data"], stored["created"], stored.get("uid"))

    def save(self, session_id: str, session: Stored, new: bool) -> bool:
        """Write the session and refresh its idle timeout. ``new`` creates it; otherwise it
        is only updated, and False comes back when it no longer exists (revoked)."""
        digest = _digest(session_id)
        idle = self.idle_s if session.uid is not None else min(self.idle_s, ANONYMOUS_IDLE_S)
        value = json.dumps({"data": session.data, "created": session.created, "uid": session.uid})
        written = self._redis.set(_SESSION + digest, value, ex=idle, nx=new, xx=not new)
        if written and session.uid is not None and new:
            index = f"{_USER}{session.uid}"
            pipe = self._redis.pipeline()
            pipe.sadd(index, digest)
            pipe.expire(index, self.max_age_s)
            pipe.execute()
        return bool(written)

    def delete(self, session_id: str, uid: int | None) -> None:
        digest = _digest(session_id)
        self._redis.delete(_SESSION + digest)
        if uid is not None:
            self._redis.srem(f"{_USER}{uid}", digest)

    def revoke_user(self, uid: int) -> int:
        """End every session of user ``uid``; returns how many there were."""
        index = f"{_USER}{uid}"
        digests = [
            d.decode() if isinstance(d, bytes) else str(d) for d in self._redis.smembers(index)
        ]
        if digests:
            self._redis.delete(*(_SESSION + d for d in digests))
        self._redis.delete(index)
        log.info("sessions revoked", extra={"user_id": uid, "sessions": len(digests)})
        return len(digests)


class ServerSessionMiddleware:
    """Pure ASGI middleware putting a Redis-backed dict at ``scope["session"]``."""

    def __init__(
        self,
        app: ASGIApp,
        store: SessionStore,
        cookie: str,
        secure: bool,
        same_site: str = "lax",
    ) -> None:
        self.app = app
        self.store = store
        self.cookie = cookie
        flags = f"; Path=/; HttpOnly; SameSite={same_site}"
        self._flags = flags + ("; Secure" if secure else "")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        session_id = HTTPConnection(scope).cookies.get(self.cookie)
        loaded = None
        if session_id:
            loaded = await anyio.to_thread.run_sync(self.store.load, session_id)
        session: dict[str, Any] = dict(loaded.data) if loaded else {}
        scope["session"] = session

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = await anyio.to_thread.run_sync(self._persist, session_id, loaded, session)
                if cookie is not None:
                    MutableHeaders(scope=message).append("Set-Cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _persist(
        self, session_id: str | None, loaded: Stored | None, session: dict[str, Any]
    ) -> str | None:
        """Save, rotate or delete the session after a request; the Set-Cookie value, if any."""
        uid = session.get("uid") if isinstance(session.get("uid"), int) else None
        if not session:
            if loaded is not None and session_id:
                self.store.delete(session_id, loaded.uid)
            return self._expired() if session_id else None
        if loaded is not None and session_id and loaded.uid == uid:
            kept = Stored(session, loaded.created, uid)
            if self.store.save(session_id, kept, new=False):
                return None
            return self._expired()  # revoked while this request ran: do not re-create it
        if loaded is not None and session_id:  # another user now (sign-in): a new id
            self.store.delete(session_id, loaded.uid)
        new_id = secrets.token_urlsafe(32)
        self.store.save(new_id, Stored(session, time.time(), uid), new=True)
        return f"{self.cookie}={new_id}; Max-Age={self.store.max_age_s}{self._flags}"

    def _expired(self) -> str:
        return f"{self.cookie}=null; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT{self._flags}"
