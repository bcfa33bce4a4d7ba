"""Identifiers of clients and cameras: the one rule every layer validates against.

Ids key Kafka messages, S3 object prefixes and Postgres rows, so they are restricted to
characters that are safe in all three: 1-64 letters, digits, ``_``, ``.``, ``-``, starting
with a letter or digit (no ``/``, so ``client/camera/...`` keys split unambiguously).
"""

from __future__ import annotations

import re

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ID_RULE = "1-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit"
_ID = re.compile(ID_PATTERN)


def is_valid_id(value: str) -> bool:
    """Whether ``value`` follows :data:`ID_RULE`."""
    return _ID.fullmatch(value) is not None


def check_id(value: str, what: str = "id") -> str:
    """``value`` unchanged when it follows :data:`ID_RULE`.

    Raises:
        ValueError: it does not; the message names ``what`` and the rule.
    """
    if not is_valid_id(value):
        raise ValueError(f"{what} {value!r} is invalid: {ID_RULE}")
    return value


#: An on-demand request's id: a random UUID as 32 lowercase hex digits (``uuid4().hex``).
REQUEST_ID_PATTERN = r"^[0-9a-f]{32}$"
