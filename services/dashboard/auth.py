"""Who is calling: roles, principals, password and API-key hashing, sessions and CSRF.

- Passwords: argon2id (argon2-cffi defaults). Unknown e-mails still cost one hash, so a
  login's timing does not tell which accounts exist.
- API keys: ``vpk_`` + 43 url-safe random characters (256 bits); stored as SHA-256 hex,
  found by that hash. Shown once, at creation.
- Sessions: server-side in Redis (:mod:`services.dashboard.sessions`) holding ``uid``, a
  fingerprint of the password hash (a second guard: a password change also revokes them) and
  the CSRF token.
- CSRF: synchronizer token in the session; HTML forms send it as ``csrf_token``, scripts
  as the ``X-CSRF-Token`` header. Bearer-key requests carry no ambient credentials and skip it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

API_KEY_PREFIX = "vpk_"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"
    superadmin = "superadmin"

    def at_least(self, other: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(other)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user (session cookie) or an API key (bearer)."""

    name: str
    role: Role
    client_id: str | None
    user_id: int | None = None
    key_id: int | None = None
    via_session: bool = False

    @property
    def is_superadmin(self) -> bool:
        return self.role is Role.superadmin

    def sees(self, client_id: str) -> bool:
        return self.is_superadmin or client_id == self.client_id


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; ``None`` (no such user) still spends one hash."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def password_fingerprint(password_hash: str) -> str:
    """Short digest of the stored hash, kept in the session to end it on password change."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_matches(session: dict[str, Any], sent: object) -> bool:
    expected = session.get("csrf")
    return (
        isinstance(expected, str)
        and isinstance(sent, str)
        and hmac.compare_digest(expected.encode(), sent.encode())
    )


def start_session(session: dict[str, Any], user_id: int, password_hash: str) -> None:
    """Log in: a fresh session (no fixation) with a new CSRF token."""
    session.clear()
    session["uid"] = user_id
    session["pw"] = password_fingerprint(password_hash)
    csrf_token(session)
