"""A second detector replica joins and leaves the group again and again while frames flow:
no replica crashes and every frame is annotated (nothing lost to a rebalance)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import numpy as np

from infra.local.processes import free_port
from tests.faults.conftest import report, scaled
from tests.faults.counts import group_lag, start_group_at_end
from tests.integration.pipeline.conftest import Services, object_count, publish_frames, wait_for
from vidpipe.settings import ServiceSettings
from vidpipe.topics import FRAMES_DECODED


def _annotated(settings: ServiceSettings, prefix: str, at_least: int) -> Callable[[], bool]:
    return lambda: object_count(settings, "annotations", prefix, ".json") >= at_least


def test_detector_when_a_replica_joins_and_leaves_repeatedly_then_no_crash_no_lost_frame(
    client_id: str, vtest_frames: list[np.ndarray], settings: ServiceSettings, services: Services
) -> None:
    cycles = scaled(1, 5)
    per_cycle = scaled(30, 80)
    tag = uuid.uuid4().hex[:8]
    group = f"faults-detector-{tag}"
    asyncio.run(start_group_at_end(settings, group, FRAMES_DECODED))
    env = {
        "VIDPIPE_GROUP_ID": group,
        "VIDPIPE_REQUESTS_GROUP_ID": f"faults-detector-requests-{tag}",
        "VIDPIPE_MAX_FRAME_AGE_MS": "3600000",
        "VIDPIPE_BATCH_SIZE": "4",
    }
    first = services.start("detector", VIDPIPE_METRICS_PORT=str(free_port()), **env)
    prefix = f"{client_id}/"
    started = time.monotonic()
    published = 0
    exits: list[int] = []
    for cycle in range(cycles):
        frames = [vtest_frames[(published + i) % len(vtest_frames)] for i in range(per_cycle)]
        asyncio.run(publish_frames(settings, client_id, frames, first_seq=published))
        published += per_cycle
        second = services.start("detector", VIDPIPE_METRICS_PORT=str(free_port()), **env)
        wait_for(
            _annotated(settings, prefix, published - per_cycle // 2),
            600,
            f"cycle {cycle}: half of the new frames annotated",
        )
        exits.append(second.stop())  # SIGTERM: leaves the group mid-run
        services.running.remove(second)
        assert first.alive(), f"the first replica died in cycle {cycle}"
    wait_for(
        lambda: object_count(settings, "annotations", prefix, ".json") == published,
        600,
        f"all {published} frames annotated",
    )
    wait_for(lambda: asyncio.run(group_lag(settings, group, FRAMES_DECODED)) == 0, 120, "lag 0")
    assert first.alive()
    assert exits == [0] * cycles, f"a replica leaving exited with {exits}"
    report(
        "detector_replica_churn",
        cycles=cycles,
        frames=published,
        annotated=object_count(settings, "annotations", prefix, ".json"),
        lost=published - object_count(settings, "annotations", prefix, ".json"),
        lag_at_end=0,
        replica_exit_codes=exits,
        seconds=round(time.monotonic() - started, 1),
    )
