"""Training-job rules: what may be submitted, and what a crash does to a job."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vidpipe.events import TrainingJobQueued
from vidpipe.jobs import JobSpec, after_crash, normalize_architecture


def test_after_crash_when_attempts_left_requeues_else_fails() -> None:
    assert after_crash(1, 3) == ("queued", None)
    state, reason = after_crash(3, 3)
    assert state == "failed" and reason is not None and "3 times" in reason


def test_names_when_normalized_follow_conventions() -> None:
    assert normalize_architecture("ssdlite") == "ssdlite320_mobilenet_v3_large"
    assert normalize_architecture("fasterrcnn") == "fasterrcnn_mobilenet_v3_large_320_fpn"
    assert TrainingJobQueued(job_id=5).model_dump() == {"schema_version": 1, "job_id": 5}


def _spec(**changes: object) -> JobSpec:
    return JobSpec.model_validate(
        {"client_id": "acme", "dataset": "acme/dock", "architecture": "ssdlite", **changes}
    )


@pytest.mark.parametrize(
    ("changes", "stored"),
    [
        ({}, ("acme/dock", None, "ssdlite320_mobilenet_v3_large")),
        (
            {"dataset": "acme/dock/annotations.json"},
            ("acme/dock", None, "ssdlite320_mobilenet_v3_large"),
        ),
        (
            {"eval_dataset": "vtest-persons", "architecture": "fasterrcnn"},
            ("acme/dock", "vtest-persons", "fasterrcnn_mobilenet_v3_large_320_fpn"),
        ),
    ],
)
def test_job_spec_when_valid_then_names_normalized(
    changes: dict[str, object], stored: tuple[str, str | None, str]
) -> None:
    spec = _spec(**changes)
    assert (spec.dataset, spec.eval_dataset, spec.architecture) == stored


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "other/dock"}, "belongs to another client"),
        ({"eval_dataset": "other/holdout"}, "belongs to another client"),
        ({"dataset": "acme/Dock Set"}, "is invalid"),
        ({"architecture": "fcos_resnet50_fpn"}, "unsupported architecture"),
        ({"base_model": "coco-centernet"}, "models:/NAME@ALIAS"),
    ],
)
def test_job_spec_when_invalid_then_rejected_with_reason(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _spec(**changes)
