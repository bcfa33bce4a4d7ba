"""The detector keeps detecting while Redis, Postgres or MLflow is away for ~10 s (cut or
frozen behind a TCP proxy), dead-letters nothing for it, and has every frame detected once
the dependency is back."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from tests.integration.detector.conftest import (
    InProcessDetector,
    Proxies,
    annotated,
    dead_letters,
    publish,
    wait_for,
)
from vidpipe.configstore import ConfigStore
from vidpipe.settings import ServiceSettings

pytestmark = pytest.mark.integration

FRAMES = 20
EVERY_S = 0.5  # 20 frames over the ~10 s outage


def stale(what: str) -> float:
    return REGISTRY.get_sample_value("vidpipe_detector_stale_total", {"what": what}) or 0.0


@pytest.mark.parametrize(
    ("down", "how", "served_stale"),
    [
        (("redis",), "cut", None),  # configs from Postgres, pointer updates lost
        (("postgres",), "cut", "config"),  # cache entry gone: the last known config
        (("redis", "postgres"), "cut", "config"),
        (("redis", "postgres"), "freeze", "config"),  # hanging: only timeouts notice
        (("mlflow",), "freeze", "model"),  # the last resolved version
        (("mlflow",), "cut", "model"),
    ],
    ids=lambda v: "+".join(v) if isinstance(v, tuple) else str(v),
)
def test_detector_when_dependency_out_for_10s_then_keeps_detecting_and_loses_nothing(
    detector: InProcessDetector,
    proxies: Proxies,
    settings: ServiceSettings,
    frames_topic: str,
    client_id: str,
    down: tuple[str, ...],
    how: str,
    served_stale: str | None,
) -> None:
    # given a running detector whose next config read misses the Redis cache
    camera = f"{'-'.join(down)}-{how}-{uuid.uuid4().hex[:6]}"
    store = ConfigStore(settings.postgres, settings.redis)
    store.invalidate(client_id)
    store.close()
    stale_before = stale(served_stale) if served_stale else 0.0
    # when the dependency is away while 20 frames come over ~10 s
    for name in down:
        getattr(proxies[name], how)()
    try:
        publish(settings, frames_topic, client_id, camera, range(FRAMES), every_s=EVERY_S)
        detected_during = annotated(settings, client_id, camera)
    finally:
        proxies.restore_all()
    # then it kept detecting meanwhile, and every frame is detected once it is back
    assert detected_during >= FRAMES // 2, f"only {detected_during} detected during the outage"
    wait_for(lambda: annotated(settings, client_id, camera) == FRAMES, 120, "every frame")
    assert dead_letters(settings, frames_topic, camera) == []
    assert detector.alive(), f"the detector stopped: {detector.error!r}"
    if served_stale:
        assert stale(served_stale) > stale_before, f"no stale {served_stale} counted"
