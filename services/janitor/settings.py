"""Janitor knobs (env prefix ``VIDPIPE_``, e.g. ``VIDPIPE_DRY_RUN=true``); the retention
itself is ``VIDPIPE_RETENTION__DEFAULT_DAYS`` and each client's ``retention_days``."""

from __future__ import annotations

from pydantic import Field

from vidpipe.settings import ServiceSettings


class JanitorSettings(ServiceSettings):
    dry_run: bool = Field(default=False, description="count what is expired, delete nothing")
    metrics: bool = Field(
        default=True, description="also delete expired frame-metrics documents (MongoDB)"
    )
    progress_every: int = Field(
        default=10_000, ge=1, description="log progress every this many objects listed"
    )
