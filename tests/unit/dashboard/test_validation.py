"""Request validation rules that need no services: cameras, configs, jobs, charts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.dashboard.cameras import CameraIn
from services.dashboard.configs import ConfigIn, check_classes
from services.dashboard.errors import Invalid
from services.dashboard.jobs import JobIn
from services.dashboard.pages.reports import chart_data
from services.dashboard.reports import PerformanceReport
from vidpipe.cameras import CameraFields
from vidpipe.urls import mask_url
from vidpipe_ml.catalog import ModelVersionInfo


def _camera(**change: object) -> CameraFields:
    return CameraFields.model_validate({"name": "Gate", "url": "rtsp://h/s", "fps": 5} | change)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://10.0.0.5:554/stream",
        "rtsps://user:pw@cam.example/live",
        "file:///data/v.mp4",
        "file://localhost/data/v.mp4",
    ],
)
def test_camera_url_when_supported_then_accepted(url: str) -> None:
    assert _camera(url=url).url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cam/stream", "scheme must be one of"),
        ("rtsp:///stream", "need a host"),
        ("file://server/share/v.mp4", "absolute local path"),
        ("file:relative.mp4", "absolute local path"),
        ("rtsp://h:70000/s", "not a valid URL"),
        ("rtsp://h/s x", "spaces or control"),
        ("rtsp://h/s\x00", "spaces or control"),
        ("/data/v.mp4", "scheme must be one of"),
    ],
)
def test_camera_url_when_unsupported_then_message_says_why(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _camera(url=url)


@pytest.mark.parametrize(("fps", "ok"), [(0.1, True), (120, True), (0.09, False), (120.5, False)])
def test_camera_fps_when_at_bounds_then_01_to_120_accepted(fps: float, ok: bool) -> None:
    if ok:
        assert _camera(fps=fps).fps == fps
    else:
        with pytest.raises(ValidationError, match="fps"):
            _camera(fps=fps)


@pytest.mark.parametrize("name", ["", "   ", "tab\there", "x" * 101])
def test_camera_name_when_blank_control_or_long_then_rejected(name: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        _camera(name=name)


@pytest.mark.parametrize("camera_id", ["-lead", "has space", "x" * 65, "ü", "a/b"])
def test_camera_id_when_not_an_id_then_rejected(camera_id: str) -> None:
    with pytest.raises(ValidationError, match="camera_id"):
        CameraIn(camera_id=camera_id, name="n", url="rtsp://h/s", fps=1)


def test_camera_when_unknown_field_then_rejected() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        _camera(colour="red")


def test_mask_url_when_password_then_hidden() -> None:
    assert mask_url("rtsp://u:secret@h:554/s") == "rtsp://u:***@h:554/s"
    assert mask_url("rtsp://h/s") == "rtsp://h/s"
    assert mask_url("rtsp://u:p@[fe80::1]:554/s") == "rtsp://u:***@[fe80::1]:554/s"


def test_config_when_alias_and_version_both_or_neither_then_rejected() -> None:
    base = {"model_name": "m", "score_threshold": 0.5}
    for extra in ({}, {"model_alias": "production", "model_version": "1"}):
        with pytest.raises(ValidationError, match="exactly one of"):
            ConfigIn.model_validate(base | extra)
    assert ConfigIn.model_validate(base | {"model_version": "3"}).model_version == "3"


def _version(labels: list[str] | None) -> ModelVersionInfo:
    return ModelVersionInfo(
        name="m",
        version="1",
        aliases=[],
        labels=labels,
        status="READY",
        created_at=None,
        run_id=None,
        description=None,
    )


def test_check_classes_when_not_in_label_set_then_invalid_naming_them() -> None:
    check_classes(_version(["person", "car"]), ["person"])
    check_classes(_version(None), [])  # empty = every label, nothing to check
    with pytest.raises(Invalid, match="unicorn") as caught:
        check_classes(_version(["person", "car"]), ["person", "unicorn"])
    assert caught.value.field == "classes_of_interest"
    with pytest.raises(Invalid, match="no 'labels' tag"):
        check_classes(_version(None), ["person"])


@pytest.mark.parametrize(
    "dataset",
    ["/acme/x", "acme//x", "acme/x y", "acme/" + "x" * 129, "a/b/c", "acme/Dock"],
)
def test_job_dataset_when_not_a_dataset_name_then_rejected(dataset: str) -> None:
    with pytest.raises(ValidationError, match="dataset"):
        JobIn.model_validate({"dataset": dataset, "architecture": "ssdlite320_mobilenet_v3_large"})


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("vtest-persons", "vtest-persons"),
        ("acme/dock", "acme/dock"),
        ("acme/dock/annotations.json", "acme/dock"),
    ],
)
def test_job_dataset_when_name_or_coco_key_then_stored_as_name(given: str, stored: str) -> None:
    job = JobIn.model_validate({"dataset": given, "architecture": "ssdlite320_mobilenet_v3_large"})
    assert job.dataset == stored


def test_job_architecture_when_trainer_lacks_it_then_rejected_listing_supported() -> None:
    with pytest.raises(ValidationError, match="fasterrcnn_mobilenet_v3_large_320_fpn"):
        JobIn.model_validate({"dataset": "acme/dock", "architecture": "fcos_resnet50_fpn"})


def test_chart_data_when_rows_then_series_per_hop_quantile_and_label() -> None:
    hour = datetime(2026, 11, 22, 3, tzinfo=UTC)
    latency = {
        f"{h}_{q}_ms": 1.0
        for h in ("decoded", "detected", "rendered")
        for q in ("p50", "p95", "p99")
    }
    row = PerformanceReport(
        client_id="c",
        camera_id="cam",
        model_name="m",
        model_version="2",
        hour=hour,
        frames=10,
        dropped=0,
        effective_fps=9.5,
        mean_score=0.5,
        detections_by_label={"person": 3},
        generated_at=hour,
        **latency,
    )
    data = chart_data([row, row.model_copy(update={"detections_by_label": {"car": 1}})])
    assert data["x"] == ["11-22 03:00 v2", "11-22 03:00 v2"]
    assert data["fps"] == [9.5, 9.5]
    assert set(data["latency"]) == {"decoded", "detected", "rendered"}
    assert data["latency"]["rendered"]["p99"] == [1.0, 1.0]
    assert data["detections"] == {"car": [0, 1], "person": [3, 0]}
