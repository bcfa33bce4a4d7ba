"""End to end: a threshold changed through the dashboard's API reaches a running detector,
which applies it to its next frames without a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI

from services.dashboard.auth import Role
from services.dashboard.settings import DashboardSettings
from tests.faults.counts import start_group_at_end
from tests.integration.dashboard.conftest import Tenant, objects
from tests.integration.dashboard.seed import astronaut_bgr
from tests.integration.pipeline.conftest import Services, publish_frames, wait_for
from vidpipe.topics import ANNOTATIONS_BUCKET, FRAMES_DECODED

pytestmark = pytest.mark.integration


@pytest.fixture
def services() -> Iterator[Services]:
    started = Services()
    yield started
    started.stop_all()


def _detections(app: FastAPI, tenant: Tenant, session: str, seqs: range) -> dict[int, list[object]]:
    prefix = f"{tenant.client_id}/{tenant.camera_id}/{session}"
    docs = {
        seq: json.loads(objects(app).get(ANNOTATIONS_BUCKET, f"{prefix}/{seq}.json"))
        for seq in seqs
    }
    return {seq: doc["detections"] for seq, doc in docs.items()}


def test_config_when_threshold_set_to_1_via_api_then_running_detector_finds_nothing(
    app: FastAPI,
    tenant_factory: Callable[[], Tenant],
    dashboard_settings: DashboardSettings,
    services: Services,
) -> None:
    # given a running detector and frames detected at the tenant's threshold 0.3
    tenant = tenant_factory()
    frames = [astronaut_bgr()] * 3

    def annotated() -> int:
        return sum(1 for _ in objects(app).iter_keys(ANNOTATIONS_BUCKET, f"{tenant.client_id}/"))

    # a consumer group of its own at the topic's end: no backlog of earlier tests to chew
    group = f"detector-config-{tenant.client_id}"
    asyncio.run(start_group_at_end(dashboard_settings, group, FRAMES_DECODED))
    detector = services.start("detector", VIDPIPE_GROUP_ID=group)
    before = asyncio.run(publish_frames(dashboard_settings, tenant.client_id, frames))
    wait_for(lambda: annotated() == 3, 180, "3 frames detected")
    assert all(_detections(app, tenant, before, range(3)).values()), "the astronaut is found"
    # when an operator raises the threshold to 1.0 through the API
    body = {"model_name": "coco-centernet", "model_alias": "production", "score_threshold": 1.0}
    operator = tenant.as_(app, Role.operator)
    assert operator.put(f"/api/v1/clients/{tenant.client_id}/config", json=body).status_code == 200
    after = asyncio.run(publish_frames(dashboard_settings, tenant.client_id, frames, first_seq=3))
    wait_for(lambda: annotated() == 6, 120, "3 more frames detected")
    # then the later frames have no detections, and the detector was never restarted
    assert not any(_detections(app, tenant, after, range(3, 6)).values())
    assert detector.alive()
