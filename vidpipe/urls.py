"""Stream URLs in logs and API answers: credentials masked, one implementation."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "***"


def mask_url(url: str) -> str:
    """``url`` with the user-info password replaced by ``***``
    (``rtsp://user:secret@[::1]:554/x`` -> ``rtsp://user:***@[::1]:554/x``); URLs without a
    password, and strings that are not URLs, come back unchanged."""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:
        return url
    if password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))
