"""Camera change announcements: one event shape and key, best effort on failure."""

from __future__ import annotations

import logging

import pytest

from vidpipe.control import (
    announce_camera_change,
    camera_change,
    edit_action,
    publish_camera_change,
)
from vidpipe.events import CameraChanged, camera_key, parse_event
from vidpipe.settings import KafkaSettings
from vidpipe.topics import CAMERAS_CONTROL


class RecordingPublisher:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.fail = fail

    def publish(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        if self.fail:
            raise RuntimeError("broker down")
        self.sent.append((topic, value, key))


def test_camera_change_when_built_then_keyed_by_client_and_camera() -> None:
    key, value = camera_change("acme", "gate-1", "created", now_ns=123)

    assert key == camera_key("acme", "gate-1") == b"acme/gate-1"
    event = parse_event(CameraChanged, value)
    assert (event.client_id, event.camera_id, event.action, event.changed_ts_ns) == (
        "acme", "gate-1", "created", 123,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("was", "now", "action"),
    [(True, False, "disabled"), (False, True, "enabled"), (True, True, "updated"),
     (False, False, "updated")],
)  # fmt: skip
def test_edit_action_when_flag_flips_then_enabled_or_disabled_else_updated(
    was: bool, now: bool, action: str
) -> None:
    assert edit_action(was, now) == action


def test_publish_camera_change_when_acknowledged_then_on_the_control_topic() -> None:
    publisher = RecordingPublisher()

    assert publish_camera_change(publisher, "acme", "gate-1", "deleted")

    [(topic, value, key)] = publisher.sent
    assert (topic, key) == (CAMERAS_CONTROL, b"acme/gate-1")
    assert parse_event(CameraChanged, value).action == "deleted"


def test_publish_camera_change_when_broker_fails_then_false_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="vidpipe.control"):
        assert not publish_camera_change(RecordingPublisher(fail=True), "acme", "g", "updated")
    assert "not announced" in caplog.text and "broker down" in caplog.text


async def test_announce_camera_change_when_broker_unreachable_then_false_within_timeout() -> None:
    nowhere = KafkaSettings(bootstrap_servers="127.0.0.1:1")

    assert not await announce_camera_change(nowhere, "acme", "gate-1", "created", timeout_s=1.0)
