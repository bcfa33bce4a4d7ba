"""Per-client filtering of a model's detections (the client's config decides what it sees)."""

from __future__ import annotations

from collections.abc import Sequence

from vidpipe.configstore import ClientConfig
from vidpipe.events import Detection


def apply_client_config(detections: Sequence[Detection], config: ClientConfig) -> list[Detection]:
    """Keep detections at or above the client's score threshold and in its classes of
    interest (all classes when the list is empty), highest score first."""
    wanted = set(config.classes_of_interest)
    kept = [
        d
        for d in detections
        if d.score >= config.score_threshold and (not wanted or d.label in wanted)
    ]
    return sorted(kept, key=lambda d: d.score, reverse=True)
