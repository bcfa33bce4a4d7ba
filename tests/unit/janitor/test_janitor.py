"""The janitor's age cutoff and sweep over in-memory objects and metrics."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.janitor.service import METRICS, Janitor
from services.janitor.sweep import expire_prefix
from vidpipe.objectstore import StoredObject
from vidpipe.retention import ClientRetention, cutoff, effective_days, epoch_ns, is_expired
from vidpipe.settings import RetentionSettings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class MemoryObjects:
    """Objects with their LastModified; counts DeleteObjects calls and can fail a bucket."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], datetime] = {}
        self.delete_calls: list[int] = []
        self.broken_prefix: str | None = None

    def put(self, bucket: str, key: str, age: timedelta) -> None:
        self.objects[(bucket, key)] = NOW - age

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[StoredObject]:
        if self.broken_prefix is not None and prefix == self.broken_prefix:
            raise ConnectionError("listing failed")
        for (b, key), modified in sorted(self.objects.items()):
            if b == bucket and key.startswith(prefix):
                yield StoredObject(key, modified, 10)

    def delete_keys(self, bucket: str, keys: Sequence[str]) -> int:
        self.delete_calls.append(len(keys))
        for key in keys:
            self.objects.pop((bucket, key), None)
        return len(keys)

    def keys(self, bucket: str) -> set[str]:
        return {k for b, k in self.objects if b == bucket}


class MemoryMetrics:
    def __init__(self, docs: dict[str, tuple[str, int]]) -> None:
        self.docs = docs  # id -> (client_id, capture_ts_ns)

    def _old(self, client_id: str, before_ns: int) -> list[str]:
        return [i for i, (c, ts) in self.docs.items() if c == client_id and ts < before_ns]

    def delete_captured_before(self, client_id: str, before_ns: int) -> int:
        old = self._old(client_id, before_ns)
        for doc_id in old:
            del self.docs[doc_id]
        return len(old)

    def count_captured_before(self, client_id: str, before_ns: int) -> int:
        return len(self._old(client_id, before_ns))


def test_cutoff_when_days_then_that_many_days_before_now() -> None:
    assert cutoff(NOW, 30) == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_cutoff_when_now_in_another_zone_then_same_instant_in_utc() -> None:
    paris = NOW.astimezone(ZoneInfo("Europe/Paris"))
    assert cutoff(paris, 1) == NOW - timedelta(days=1)
    assert cutoff(paris, 1).tzinfo == UTC


@pytest.mark.parametrize("days", [0, -1])
def test_cutoff_when_retention_not_positive_then_refused(days: int) -> None:
    with pytest.raises(ValueError, match="at least one day"):
        cutoff(NOW, days)


def test_cutoff_when_now_naive_then_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        cutoff(datetime(2026, 12, 1), 1)


def test_is_expired_when_exactly_at_cutoff_then_kept_and_a_microsecond_older_expired() -> None:
    limit = cutoff(NOW, 7)
    assert not is_expired(limit, limit)
    assert is_expired(limit - timedelta(microseconds=1), limit)
    assert not is_expired(limit + timedelta(seconds=1), limit)


def test_effective_days_when_client_has_none_then_platform_default() -> None:
    settings = RetentionSettings(default_days=45)
    assert effective_days(None, settings) == 45
    assert effective_days(3, settings) == 3


def test_epoch_ns_when_microseconds_then_exact() -> None:
    moment = datetime(2026, 12, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert epoch_ns(moment) == 1_796_083_200_123_456_000


def test_expire_prefix_when_old_and_new_then_only_old_deleted_in_batches() -> None:
    # given 7 objects older than the cutoff and 3 newer, under one prefix, and one elsewhere
    store = MemoryObjects()
    for i in range(7):
        store.put("frames", f"a/cam/s1/{i}.jpg", timedelta(days=10, minutes=i))
    for i in range(3):
        store.put("frames", f"a/cam/s2/{i}.jpg", timedelta(days=2))
    store.put("frames", "b/cam/s1/0.jpg", timedelta(days=99))
    # when expired with a 5-day retention and batches of 3
    result = expire_prefix(store, "frames", "a/", cutoff(NOW, 5), batch=3)
    # then the 7 old ones went in batches of 3, 3, 1; the new ones and b's stayed
    assert (result.listed, result.expired, result.bytes) == (10, 7, 70)
    assert store.delete_calls == [3, 3, 1]
    assert store.keys("frames") == {f"a/cam/s2/{i}.jpg" for i in range(3)} | {"b/cam/s1/0.jpg"}


def test_expire_prefix_when_dry_run_then_counted_and_nothing_deleted() -> None:
    store = MemoryObjects()
    store.put("renders", "a/cam/clips/000001.mp4", timedelta(days=40))
    result = expire_prefix(store, "renders", "a/", cutoff(NOW, 30), dry_run=True)
    assert result.expired == 1
    assert store.delete_calls == [] and len(store.objects) == 1


def test_janitor_when_two_clients_then_each_by_its_own_retention() -> None:
    # given client a (3 days) and b (30 days), each with 10-day-old and 1-day-old data
    store = MemoryObjects()
    docs: dict[str, tuple[str, int]] = {}
    for client in ("a", "b"):
        for bucket in ("frames", "annotations", "renders", "requests"):
            store.put(bucket, f"{client}/old", timedelta(days=10))
            store.put(bucket, f"{client}/new", timedelta(days=1))
        docs[f"{client}/old"] = (client, epoch_ns(NOW - timedelta(days=10)))
        docs[f"{client}/new"] = (client, epoch_ns(NOW - timedelta(days=1)))
    metrics = MemoryMetrics(docs)
    retentions = [ClientRetention("a", 3, own=True), ClientRetention("b", 30, own=False)]
    # when the janitor runs
    report = Janitor(store, metrics).run(retentions, NOW)
    # then only a's old data went, and the counts say so
    assert report.by_client["a"] == {
        "frames": 1, "annotations": 1, "renders": 1, "requests": 1, METRICS: 1
    }  # fmt: skip
    assert sum(report.by_client["b"].values()) == 0
    for bucket in ("frames", "annotations", "renders", "requests"):
        assert store.keys(bucket) == {"a/new", "b/old", "b/new"}
    assert set(metrics.docs) == {"a/new", "b/old", "b/new"}
    assert report.totals["frames"] == 1 and report.failed == []
    assert report.summary().startswith("janitor deleted frames=1 annotations=1 renders=1")
    assert "requests=1 metrics=1 clients=2 failed=0" in report.summary()


def test_janitor_when_one_client_fails_then_the_others_are_still_swept() -> None:
    # given a's listing fails
    store = MemoryObjects()
    for client in ("a", "b", "c"):
        store.put("frames", f"{client}/old", timedelta(days=10))
    store.broken_prefix = "a/"
    retentions = [ClientRetention(c, 1, own=True) for c in ("a", "b", "c")]
    # when the janitor runs
    report = Janitor(store, None).run(retentions, NOW)
    # then a is reported failed, b and c were swept
    assert report.failed == ["a"]
    assert store.keys("frames") == {"a/old"}
    assert set(report.by_client) == {"b", "c"}
    assert "failed=1" in report.summary() and "metrics" not in report.summary()


def test_janitor_when_dry_run_then_counts_without_deleting() -> None:
    store = MemoryObjects()
    store.put("frames", "a/old", timedelta(days=10))
    metrics = MemoryMetrics({"a/old": ("a", epoch_ns(NOW - timedelta(days=10)))})
    report = Janitor(store, metrics, dry_run=True).run([ClientRetention("a", 1, True)], NOW)
    assert report.by_client["a"]["frames"] == 1 and report.by_client["a"][METRICS] == 1
    assert store.keys("frames") == {"a/old"} and set(metrics.docs) == {"a/old"}
    assert report.summary().startswith("janitor would delete frames=1")
