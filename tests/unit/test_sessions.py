"""Stream sessions in frame identity and object keys: a decoder restart overwrites nothing."""

from __future__ import annotations

import re

from tests.unit.fakes import decoded
from vidpipe import keys
from vidpipe.ids import is_valid_id
from vidpipe.sessions import SESSION_PATTERN, new_session_id

T0 = 1_764_590_400_000_000_000  # 2025-12-01T12:00:00Z in ns


def test_new_session_id_when_made_then_valid_id_sorting_by_start_time() -> None:
    first, later = new_session_id(T0), new_session_id(T0 + 61_000_000_000)
    assert re.fullmatch(SESSION_PATTERN, first) and is_valid_id(first)
    assert first.startswith("20251201t120000-")
    assert first < later
    # two starts in the same second still differ (16 random bits; 20 draws in a row)
    assert len({new_session_id(T0) for _ in range(20)}) > 1


def test_keys_when_sessions_differ_then_no_object_shared() -> None:
    one, two = decoded("acme", "gate", 0, T0, "s1"), decoded("acme", "gate", 0, T0, "s2")
    for key_of in (keys.frame_image, keys.annotation, keys.render):
        assert key_of(one).key != key_of(two).key
        assert key_of(one).key.startswith(keys.camera_prefix("acme", "gate"))
    assert keys.clip("acme", "gate", "s1", 0) != keys.clip("acme", "gate", "s2", 0)
    assert one.frame_id == "acme/gate/s1/0" != two.frame_id


def test_parse_session_when_key_under_camera_then_session_else_none() -> None:
    assert keys.parse_session("acme/gate/s1/3.json", "acme", "gate") == "s1"
    assert keys.parse_session("acme/gate/s1/clips/000001.mp4", "acme", "gate") == "s1"
    assert keys.parse_session("acme/gate/3.json", "acme", "gate") is None
    assert keys.parse_session("acme/other/s1/3.json", "acme", "gate") is None
