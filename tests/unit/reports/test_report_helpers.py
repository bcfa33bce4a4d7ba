"""Pure helpers of the performance report job: DSN -> JDBC, windows, slices, hours, parsing."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from services.reports.report_sink import jdbc_target
from services.reports.report_sources import (
    METRICS_SCHEMA,
    MalformedDocument,
    hour_bucket_s,
    hour_floor,
    parse_metrics_document,
    resolve_window,
    time_slices,
)
from vidpipe.instants import parse_instant

HOUR_NS = 3_600_000_000_000
T0 = 1_795_319_803_178_780_524  # 2026-11-22 03:56:43.178780524 UTC
T0_HOUR_S = 1_795_316_400  # 2026-11-22 03:00:00 UTC


def test_jdbc_target_when_libpq_url_without_password_then_url_and_user_property() -> None:
    target = jdbc_target("postgresql://postgres@127.0.0.1:5432/vidpipe")

    assert target.url == "jdbc:postgresql://127.0.0.1:5432/vidpipe"
    assert target.properties == {"driver": "org.postgresql.Driver", "user": "postgres"}


def test_jdbc_target_when_password_and_sslmode_then_kept_out_of_url_and_repr() -> None:
    target = jdbc_target("postgresql://app:s%40cret@db.internal/reports?sslmode=require")

    assert target.url == "jdbc:postgresql://db.internal:5432/reports"
    assert target.properties["password"] == "s@cret"
    assert target.properties["sslmode"] == "require"
    assert "s@cret" not in repr(target)


def test_jdbc_target_when_keyword_dsn_with_hosts_then_all_hosts_in_order() -> None:
    target = jdbc_target("host=pg1,::1 port=5433,5434 dbname=vidpipe user=u application_name=ev")

    assert target.url == "jdbc:postgresql://pg1:5433,[::1]:5434/vidpipe"
    assert target.properties["ApplicationName"] == "ev"


def test_jdbc_target_when_no_host_then_localhost_default_port() -> None:
    assert jdbc_target("dbname=vidpipe").url == "jdbc:postgresql://localhost:5432/vidpipe"


@pytest.mark.parametrize(
    "dsn", ["host=/var/run/postgresql dbname=vidpipe", "postgresql://127.0.0.1:5432"]
)
def test_jdbc_target_when_socket_host_or_no_database_then_value_error(dsn: str) -> None:
    with pytest.raises(ValueError):
        jdbc_target(dsn)


def test_time_slices_when_window_not_multiple_then_contiguous_and_last_shorter() -> None:
    slices = time_slices(100, 350, 100)

    assert slices == [(100, 200), (200, 300), (300, 350)]


def test_time_slices_when_hours_in_ten_minute_slices_then_cover_exactly() -> None:
    slices = time_slices(0, 3 * HOUR_NS, 600_000_000_000)

    assert len(slices) == 18
    assert slices[0][0] == 0 and slices[-1][1] == 3 * HOUR_NS
    assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))


def test_time_slices_when_slice_not_positive_then_value_error() -> None:
    with pytest.raises(ValueError):
        time_slices(0, 10, 0)


def test_hour_bucket_when_capture_inside_hour_then_hour_start_seconds() -> None:
    assert hour_bucket_s(T0) == T0_HOUR_S
    assert hour_bucket_s(T0_HOUR_S * 1_000_000_000) == T0_HOUR_S
    assert hour_bucket_s(T0_HOUR_S * 1_000_000_000 - 1) == T0_HOUR_S - 3600


def test_hour_floor_when_other_timezone_or_naive_then_utc_hour() -> None:
    plus2 = timezone(timedelta(hours=2))

    assert hour_floor(datetime(2026, 11, 22, 5, 30, tzinfo=plus2)) == datetime(
        2026, 11, 22, 3, tzinfo=UTC
    )
    assert hour_floor(datetime(2026, 11, 22, 3, 59, 59)) == datetime(2026, 11, 22, 3, tzinfo=UTC)


def test_resolve_window_when_defaults_then_last_hours_widened_to_whole_hours() -> None:
    now = datetime(2026, 11, 22, 4, 10, tzinfo=UTC)

    window = resolve_window(None, None, now, default_hours=24)

    assert window.start == datetime(2026, 11, 21, 4, tzinfo=UTC)
    assert window.end == datetime(2026, 11, 22, 5, tzinfo=UTC)
    assert window.end_ns - window.start_ns == 25 * HOUR_NS


def test_resolve_window_when_bounds_on_hours_then_unchanged() -> None:
    since, until = datetime(2026, 1, 1, 3, tzinfo=UTC), datetime(2026, 1, 1, 6, tzinfo=UTC)

    window = resolve_window(since, until, datetime.now(UTC), 24)

    assert (window.start, window.end) == (since, until)


def test_resolve_window_when_since_not_before_until_then_value_error() -> None:
    moment = datetime(2026, 1, 1, 3, 30, tzinfo=UTC)

    with pytest.raises(ValueError):
        resolve_window(moment, moment, moment, 24)


def _doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": "acme/gate-1/7",
        "client_id": "acme",
        "camera_id": "gate-1",
        "frame_seq": 7,
        "capture_ts_ns": T0,
        "decoded_ts_ns": T0 + 10_000_000,
        "detected_ts_ns": T0 + 200_000_000,
        "rendered_ts_ns": T0 + 250_000_000,
        "model_name": "coco-centernet",
        "model_version": "3",
        "detections_by_label": {"person": 3, "car": 1},
        "mean_score": 0.5,
        "dropped": False,
    }
    return doc | overrides


def test_parse_metrics_document_when_complete_then_row_in_schema_order() -> None:
    row = parse_metrics_document(_doc())

    assert len(row) == len(METRICS_SCHEMA.fields)
    assert dict(zip(METRICS_SCHEMA.fieldNames(), row, strict=True)) == {
        "client_id": "acme",
        "camera_id": "gate-1",
        "model_name": "coco-centernet",
        "model_version": "3",
        "hour_s": T0_HOUR_S,
        "capture_ts_ns": T0,
        "decoded_ts_ns": T0 + 10_000_000,
        "detected_ts_ns": T0 + 200_000_000,
        "rendered_ts_ns": T0 + 250_000_000,
        "dropped": False,
        "mean_score": 0.5,
        "n_detections": 4,
        "detections_by_label": {"person": 3, "car": 1},
    }


def test_parse_metrics_document_when_dropped_without_model_then_empty_model_fields() -> None:
    doc = {k: v for k, v in _doc(dropped=True).items() if not k.startswith(("model", "det"))}
    doc.pop("mean_score")
    doc.pop("rendered_ts_ns")

    row = dict(zip(METRICS_SCHEMA.fieldNames(), parse_metrics_document(doc), strict=True))

    assert (row["model_name"], row["model_version"]) == ("", "")
    assert row["dropped"] is True
    assert row["detected_ts_ns"] is None and row["mean_score"] is None
    assert row["n_detections"] == 0 and row["detections_by_label"] == {}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"capture_ts_ns": None}, "capture_ts_ns"),
        ({"capture_ts_ns": float(T0)}, "capture_ts_ns"),
        ({"capture_ts_ns": "1795319803178780524"}, "capture_ts_ns"),
        ({"decoded_ts_ns": True}, "decoded_ts_ns"),
        ({"client_id": ""}, "client_id"),
        ({"camera_id": 12}, "camera_id"),
        ({"model_version": 3}, "model_version"),
        ({"detections_by_label": ["person"]}, "detections_by_label"),
        ({"detections_by_label": {"person": -1}}, "detections_by_label"),
        ({"mean_score": float("nan")}, "mean_score"),
        ({"dropped": "no"}, "dropped"),
    ],
)
def test_parse_metrics_document_when_field_malformed_then_error_names_it(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(MalformedDocument, match=field):
        parse_metrics_document(_doc(**overrides))


def test_parse_instant_when_relative_or_iso_then_utc_datetime() -> None:
    now = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)

    assert parse_instant("2h", now) == datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    assert parse_instant("90m", now) == datetime(2026, 11, 22, 2, 30, tzinfo=UTC)
    assert parse_instant("2026-11-22T05:00:00+02:00", now) == datetime(2026, 11, 22, 3, tzinfo=UTC)
    assert parse_instant("2026-11-22T03:00:00Z", now) == datetime(2026, 11, 22, 3, tzinfo=UTC)
    assert parse_instant("2026-11-22 03:00", now) == datetime(2026, 11, 22, 3, tzinfo=UTC)


def test_parse_instant_when_garbage_then_value_error() -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_instant("yesterday-ish", datetime.now(UTC))
