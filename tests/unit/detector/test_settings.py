"""Detector settings: the remote backend fails fast without a model server address."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.detector.__main__ import remote_target
from services.detector.settings import DetectorSettings
from vidpipe_ml.cache import RemoteTarget


def test_settings_when_remote_without_url_then_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="VIDPIPE_INFERENCE_URL"):
        DetectorSettings(backend="remote")


def test_remote_target_when_remote_then_url_deadline_and_retry_budget() -> None:
    settings = DetectorSettings(
        backend="remote", inference_url="model-server:8081", inference_retry_s=60
    )
    assert remote_target(settings) == RemoteTarget("model-server:8081", 30.0, 60.0)
    assert remote_target(DetectorSettings(inference_url="model-server:8081")) is None
