"""Camera lifecycle announcements: :class:`~vidpipe.events.CameraChanged` on
``cameras.control.v1`` after a camera's row is committed, so the agent owning the camera's
partition starts, restarts or stops its decoder at once.

Best effort by design: agents also re-read their cameras from Postgres every ~30 s, so a
broker outage only delays a change; a failed announcement is logged, never raised. Every
writer (API, dashboard pages, CLI) calls one of the functions here; the event, its topic and
its key (:func:`~vidpipe.events.camera_key`) are built in one place (:func:`camera_change`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from aiokafka import AIOKafkaProducer

from vidpipe.bus import make_producer
from vidpipe.events import CameraAction, CameraChanged, camera_key, encode_event
from vidpipe.settings import KafkaSettings
from vidpipe.topics import CAMERAS_CONTROL

log = logging.getLogger(__name__)

#: Seconds an announcement may take (connect included) before it is given up.
ANNOUNCE_TIMEOUT_S = 5.0


class SyncPublisher(Protocol):
    """A blocking publisher (the dashboard's): raises when the broker did not acknowledge."""

    def publish(self, topic: str, value: bytes, key: bytes | None = None) -> None: ...


def camera_change(
    client_id: str, camera_id: str, action: CameraAction, now_ns: int | None = None
) -> tuple[bytes, bytes]:
    """``(key, value)`` of the :class:`CameraChanged` message for ``CAMERAS_CONTROL``.

    Raises:
        pydantic.ValidationError: an id breaks :data:`vidpipe.ids.ID_RULE`.
    """
    event = CameraChanged(
        client_id=client_id,
        camera_id=camera_id,
        action=action,
        changed_ts_ns=now_ns or time.time_ns(),
    )
    return camera_key(client_id, camera_id), encode_event(event)


def edit_action(was_enabled: bool, is_enabled: bool) -> CameraAction:
    """The action of an edit: ``enabled``/``disabled`` when the flag flips, else ``updated``
    (the agent compares URL and rate with what it runs and restarts only when they differ,
    so an edit of the name alone costs a Postgres read, not a restart)."""
    if was_enabled != is_enabled:
        return "enabled" if is_enabled else "disabled"
    return "updated"


async def announce_camera_change(
    producer_or_settings: AIOKafkaProducer | KafkaSettings,
    client_id: str,
    camera_id: str,
    action: CameraAction,
    timeout_s: float = ANNOUNCE_TIMEOUT_S,
) -> bool:
    """Publish the change (acks=all) through a started producer, or a producer of its own
    made from settings; call it after the Postgres commit. Returns whether the broker
    acknowledged within ``timeout_s`` seconds; a failure is logged, not raised."""
    key, value = camera_change(client_id, camera_id, action)

    async def send() -> None:
        if isinstance(producer_or_settings, AIOKafkaProducer):
            await producer_or_settings.send_and_wait(CAMERAS_CONTROL, value, key=key)
            return
        producer = make_producer(producer_or_settings, linger_ms=0)
        try:
            await producer.start()
            await producer.send_and_wait(CAMERAS_CONTROL, value, key=key)
        finally:
            await asyncio.shield(producer.stop())

    try:
        await asyncio.wait_for(send(), timeout_s)
    except Exception as exc:
        _not_announced(client_id, camera_id, action, exc)
        return False
    return True


def announce_camera_change_sync(
    settings: KafkaSettings,
    client_id: str,
    camera_id: str,
    action: CameraAction,
    timeout_s: float = ANNOUNCE_TIMEOUT_S,
) -> bool:
    """:func:`announce_camera_change` for synchronous callers outside an event loop (the CLI)."""
    return asyncio.run(announce_camera_change(settings, client_id, camera_id, action, timeout_s))


def publish_camera_change(
    publisher: SyncPublisher, client_id: str, camera_id: str, action: CameraAction
) -> bool:
    """:func:`announce_camera_change` through a long-lived blocking publisher (the
    dashboard's); returns whether it was acknowledged, logs when not."""
    key, value = camera_change(client_id, camera_id, action)
    try:
        publisher.publish(CAMERAS_CONTROL, value, key=key)
    except Exception as exc:
        _not_announced(client_id, camera_id, action, exc)
        return False
    return True


def _not_announced(client_id: str, camera_id: str, action: str, exc: BaseException) -> None:
    log.warning(
        "camera change not announced (agents pick it up when they reconcile): %s",
        f"{type(exc).__name__}: {exc}",
        extra={"client_id": client_id, "camera_id": camera_id, "action": action},
    )
