"""Stream URLs and their secrets: the user-info password and secret query parameters
(``?password=``, ``?token=``, ...). One implementation of masking them in logs and answers,
and of putting stored secrets back into an edited URL.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

MASK = "***"
#: Query parameters whose values are secrets (compared case-insensitively).
SECRET_PARAMS = frozenset(
    {
        "password", "passwd", "pass", "pwd", "secret", "token", "access_token", "auth",
        "authorization", "key", "apikey", "api_key", "signature", "sig", "credentials",
    }
)  # fmt: skip


class StoredSecretsMismatch(ValueError):
    """An edited URL asks to keep a stored secret (``***``) it cannot get: the URL now names
    another host, or there is no stored secret of that name."""


def _netloc(host: str, port: int | None, user: str | None, password: str | None) -> str:
    """A netloc from parts as ``urlsplit`` gives them (user and password still quoted)."""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    if user is None and password is None:
        return host
    auth = user or ""
    if password is not None:
        auth += ":" + password
    return f"{auth}@{host}"


def _query(pairs: list[tuple[str, str]]) -> str:
    return urlencode(pairs, safe="*")


def _secret_param(name: str) -> bool:
    return name.lower() in SECRET_PARAMS


def has_secrets(url: str) -> bool:
    """Whether ``url`` carries a user-info password or a secret query parameter."""
    return mask_url(url) != url


def mask_url(url: str) -> str:
    """``url`` with the user-info password and the values of secret query parameters
    replaced by ``***`` (``rtsp://user:secret@[::1]:554/x?token=t`` ->
    ``rtsp://user:***@[::1]:554/x?token=***``); URLs without secrets, and strings that are
    not URLs, come back unchanged."""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any(_secret_param(k) for k, _ in pairs)
    if password is None and not secret_query:
        return url
    if password is not None:
        netloc = _netloc(parts.hostname or "", port, parts.username, MASK)
        parts = parts._replace(netloc=netloc)
    if secret_query:
        masked = [(k, MASK if _secret_param(k) else v) for k, v in pairs]
        parts = parts._replace(query=_query(masked))
    return urlunsplit(parts)


def without_password(url: str) -> str:
    """``url`` with its user-info password removed (the user name kept) and secret query
    values masked: what an edit form shows (``rtsp://user@host/x?token=***``)."""
    masked = mask_url(url)
    parts = urlsplit(masked)
    if parts.password is None:
        return masked
    return urlunsplit(
        parts._replace(netloc=_netloc(parts.hostname or "", parts.port, parts.username, None))
    )


def with_password(url: str, password: str) -> str:
    """``url`` with user-info password ``password`` (its user name kept).

    Raises:
        ValueError: ``url`` has no user name to go with the password.
    """
    parts = urlsplit(url)
    if not parts.username:
        raise ValueError("put the user name in the URL (rtsp://user@host/...) to set a password")
    quoted = quote(password, safe="")
    netloc = _netloc(parts.hostname or "", parts.port, parts.username, quoted)
    return urlunsplit(parts._replace(netloc=netloc))


def restore_secrets(submitted: str, stored: str) -> str:
    """``submitted`` with the secrets of ``stored`` put back where it asks for them: a
    ``***`` password or query value, or no user-info password at all (same or no user
    name), when both URLs name the same scheme, host and port. Secrets the submitter typed
    are kept as typed.

    Raises:
        StoredSecretsMismatch: ``submitted`` holds ``***`` but names another host than
            ``stored`` (or ``stored`` has no such secret).
    """
    new, old = urlsplit(submitted), urlsplit(stored)
    same_place = (new.scheme, new.hostname, new.port) == (old.scheme, old.hostname, old.port)
    netloc = new.netloc
    if new.password == MASK or (new.password is None and old.password is not None):
        user_matches = new.username in (None, old.username)
        if new.password == MASK and not (same_place and user_matches and old.password):
            raise StoredSecretsMismatch(
                "the URL's password is *** but the stored one cannot be reused here "
                "(another host or user): type the password"
            )
        if same_place and user_matches:
            netloc = _netloc(new.hostname or "", new.port, old.username, old.password)
    stored_params = dict(parse_qsl(old.query, keep_blank_values=True))
    given = parse_qsl(new.query, keep_blank_values=True)
    pairs = []
    for key, value in given:
        if value == MASK and _secret_param(key):
            if not same_place or key not in stored_params:
                raise StoredSecretsMismatch(
                    f"the URL's {key} is *** but there is no stored {key} for this host: "
                    f"type the value"
                )
            value = stored_params[key]
        pairs.append((key, value))
    query = new.query if pairs == given else _query(pairs)
    if netloc == new.netloc and query == new.query:
        return submitted
    return urlunsplit(new._replace(netloc=netloc, query=query))
