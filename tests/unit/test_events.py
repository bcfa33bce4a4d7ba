from __future__ import annotations

import pytest

from vidpipe.events import (
    DeadLetter,
    Detection,
    DetectionsProduced,
    FrameDecoded,
    FrameMetrics,
    InvalidEvent,
    ModelRef,
    ObjectRef,
    encode_event,
    parse_event,
)

FRAME = FrameDecoded(
    client_id="acme",
    camera_id="gate-1",
    session_id="20261201t120000-0a0a",
    frame_seq=42,
    capture_ts_ns=1_700_000_000_000_000_000,
    decoded_ts_ns=1_700_000_000_010_000_000,
    width=768,
    height=576,
    image=ObjectRef(bucket="frames", key="acme/gate-1/20261201t120000-0a0a/42.jpg"),
)


def test_frame_decoded_when_round_tripped_then_equal() -> None:
    assert parse_event(FrameDecoded, encode_event(FRAME)) == FRAME
    assert FRAME.frame_id == "acme/gate-1/20261201t120000-0a0a/42"


def test_detections_produced_when_round_tripped_then_equal() -> None:
    event = DetectionsProduced(
        **FRAME.model_dump(exclude={"schema_version", "decoded_ts_ns"}),
        decoded_ts_ns=FRAME.decoded_ts_ns,
        annotations=ObjectRef(bucket="annotations", key="acme/gate-1/20261201t120000-0a0a/42.json"),
        model=ModelRef(name="coco-centernet", version="1"),
        detections=(Detection(box=(1.0, 2.0, 30.5, 40.0), score=0.9, label="person"),),
        detected_ts_ns=FRAME.decoded_ts_ns + 5,
    )
    assert parse_event(DetectionsProduced, encode_event(event)) == event


def test_frame_metrics_when_round_tripped_then_equal() -> None:
    metrics = FrameMetrics(
        client_id="acme", camera_id="gate-1", session_id="s1", frame_seq=1, stage="renderer",
        capture_ts_ns=5,
        rendered_ts_ns=9,
    )  # fmt: skip
    assert parse_event(FrameMetrics, encode_event(metrics)) == metrics


def test_parse_event_when_field_missing_then_names_it() -> None:
    raw = FRAME.model_dump_json(exclude={"width"}).encode()
    with pytest.raises(InvalidEvent, match=r"invalid FrameDecoded: width: Field required"):
        parse_event(FrameDecoded, raw)


def test_parse_event_when_unknown_field_then_rejected() -> None:
    raw = FRAME.model_dump_json()[:-1].encode() + b',"surprise":1}'
    with pytest.raises(InvalidEvent, match="surprise: Extra inputs are not permitted"):
        parse_event(FrameDecoded, raw)


def test_parse_event_when_not_json_then_rejected() -> None:
    with pytest.raises(InvalidEvent, match="invalid FrameDecoded"):
        parse_event(FrameDecoded, b"\xff\x00 not json")


@pytest.mark.parametrize(
    "change",
    [{"frame_seq": -1}, {"camera_id": "bad/id"}, {"schema_version": 1}, {"width": 0}],
)
def test_frame_decoded_when_field_invalid_then_rejected(change: dict[str, object]) -> None:
    raw = FRAME.model_copy(update=change).model_dump_json().encode()
    with pytest.raises(InvalidEvent):
        parse_event(FrameDecoded, raw)


def test_detection_when_box_not_xyxy_then_rejected() -> None:
    with pytest.raises(ValueError, match="xyxy"):
        Detection(box=(10.0, 10.0, 5.0, 20.0), score=0.5, label="person")


def test_events_when_frozen_then_immutable() -> None:
    with pytest.raises(ValueError):
        FRAME.frame_seq = 3


def test_dead_letter_when_built_then_keeps_payload() -> None:
    letter = DeadLetter(
        source_topic="frames.decoded.v1", partition=0, offset=7, key="gate-1",
        reason="invalid", error_type="invalid_event", service="detector", failed_ts_ns=1,
        payload="{not json",
    )  # fmt: skip
    assert parse_event(DeadLetter, encode_event(letter)).payload == "{not json"
