"""Orphan recovery is rate-limited per trainer: idle trainers poll often, recovery is a scan."""

from __future__ import annotations

from services.trainer.__main__ import OrphanRecovery
from vidpipe.jobs import TrainingJob


class CountingOrphans:
    def __init__(self) -> None:
        self.calls: list[tuple[float, int]] = []

    def recover_orphans(self, stale_after_s: float, max_attempts: int) -> list[TrainingJob]:
        self.calls.append((stale_after_s, max_attempts))
        return []


async def test_orphan_recovery_when_polled_often_runs_once_per_period() -> None:
    now = [100.0]
    orphans = CountingOrphans()
    recovery = OrphanRecovery(orphans, 60.0, 3, every_s=30.0, clock=lambda: now[0])

    for step in range(61):  # 0.5 s polls for 30 s: at start, then once the period passed
        await recovery.maybe_recover()
        now[0] += 0.5 if step < 60 else 0.0

    assert orphans.calls == [(60.0, 3), (60.0, 3)]


async def test_orphan_recovery_when_fresh_runs_at_once() -> None:
    orphans = CountingOrphans()
    recovery = OrphanRecovery(orphans, 5.0, 1, every_s=3600.0, clock=lambda: 0.0)

    await recovery.maybe_recover()
    await recovery.maybe_recover()

    assert orphans.calls == [(5.0, 1)]
