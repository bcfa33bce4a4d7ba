"""The retention janitor against the real S3 server, Postgres and the MongoDB stand-in.

S3 sets ``LastModified`` itself, so the test writes "old" objects, then "new" ones a moment
later, and runs the janitor with ``now`` moved forward so that exactly the old ones are past
a one-day retention. Clients live in a scratch database (only they are swept) and carry
fresh ids, so other tests' objects in the shared buckets are never listed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pymongo
import pytest
import sqlalchemy as sa

from infra.local.provision import sqlalchemy_url, upgrade_database
from services.janitor.__main__ import sweep
from services.janitor.service import METRICS
from services.janitor.settings import JanitorSettings
from vidpipe.metricsstore import COLLECTION, MetricsStore
from vidpipe.objectstore import ObjectStore
from vidpipe.retention import epoch_ns
from vidpipe.settings import MongoSettings, PostgresSettings, ServiceSettings
from vidpipe.topics import ANNOTATIONS_BUCKET, FRAMES_BUCKET, RENDERS_BUCKET, REQUESTS_BUCKET

pytestmark = pytest.mark.integration

BUCKETS = (FRAMES_BUCKET, ANNOTATIONS_BUCKET, RENDERS_BUCKET, REQUESTS_BUCKET)


def keys_of(client: str, tag: str) -> dict[str, list[str]]:
    """One client's objects in the session layout (frames, annotations, renders, a clip)
    and a request's, named by ``tag`` ("old"/"new")."""
    camera = f"{client}/cam-1/sess-{tag}"
    return {
        FRAMES_BUCKET: [f"{camera}/1.jpg", f"{camera}/2.jpg"],
        ANNOTATIONS_BUCKET: [f"{camera}/1.json"],
        RENDERS_BUCKET: [f"{camera}/1.jpg", f"{camera}/clips/000001.mp4"],
        REQUESTS_BUCKET: [f"{client}/req-{tag}.jpg", f"{client}/req-{tag}.json"],
    }


@dataclass
class World:
    settings: JanitorSettings
    store: ObjectStore
    mongo: MetricsStore
    a: str  # own retention: one day
    b: str  # no retention of its own: the platform default (30 days)
    old: dict[str, dict[str, list[str]]]
    new: dict[str, dict[str, list[str]]]
    now: datetime  # one day after the first "new" object: exactly the old ones are expired

    def present(self, client: str) -> dict[str, set[str]]:
        return {b: set(self.store.iter_keys(b, f"{client}/")) for b in BUCKETS}

    def metrics_ids(self) -> set[str]:
        return {str(d["_id"]) for d in self.mongo.find({"client_id": {"$in": [self.a, self.b]}})}


def _expected(*layouts: dict[str, list[str]]) -> dict[str, set[str]]:
    return {b: {k for layout in layouts for k in layout[b]} for b in BUCKETS}


@pytest.fixture
def world(scratch_dsn: str, stack_settings: ServiceSettings) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:8]
    a, b = f"ret-a-{suffix}", f"ret-b-{suffix}"
    upgrade_database(scratch_dsn)
    engine = sa.create_engine(sqlalchemy_url(scratch_dsn))
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO clients (client_id, name, retention_days) VALUES (:a, 'A', 1)"),
            {"a": a},
        )
        conn.execute(sa.text("INSERT INTO clients (client_id, name) VALUES (:b, 'B')"), {"b": b})
    engine.dispose()
    mongo_settings = MongoSettings(url=stack_settings.mongo.url, database=f"janitor_{suffix}")
    settings = JanitorSettings(
        s3=stack_settings.s3,
        postgres=PostgresSettings(dsn=scratch_dsn),  # type: ignore[arg-type]
        mongo=mongo_settings,
    )
    store = ObjectStore(stack_settings.s3)
    mongo = MetricsStore(mongo_settings)
    old = {c: keys_of(c, "old") for c in (a, b)}
    new = {c: keys_of(c, "new") for c in (a, b)}

    def put(layouts: dict[str, dict[str, list[str]]]) -> None:
        for layout in layouts.values():
            for bucket, keys in layout.items():
                for key in keys:
                    store.put(bucket, key, b"x", "application/octet-stream")

    put(old)
    time.sleep(1.2)  # LastModified has one-second resolution
    put(new)

    def stamps(layouts: dict[str, dict[str, list[str]]]) -> list[datetime]:
        return [
            o.last_modified
            for client in layouts
            for bucket in BUCKETS
            for o in store.iter_objects(bucket, f"{client}/")
            if o.key in layouts[client][bucket]
        ]

    newest_old, oldest_new = max(stamps(old)), min(stamps(new))
    assert newest_old < oldest_new
    now = oldest_new + timedelta(days=1)  # cutoff == oldest_new: kept (strictly before)
    for client in (a, b):
        mongo.merge_many(
            [
                (f"{client}/cam-1/1", {"client_id": client, "capture_ts_ns": epoch_ns(newest_old)}),
                (f"{client}/cam-1/2", {"client_id": client, "capture_ts_ns": epoch_ns(oldest_new)}),
            ]
        )
    try:
        yield World(settings, store, mongo, a, b, old, new, now)
    finally:
        for client in (a, b):
            for bucket in BUCKETS:
                store.delete_prefix(bucket, f"{client}/")
        mongo.close()
        mongo_db: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            mongo_settings.url, serverSelectionTimeoutMS=5000
        )
        with mongo_db:
            mongo_db[mongo_settings.database][COLLECTION].drop()


def test_janitor_when_run_then_exactly_a_clients_expired_data_is_deleted(world: World) -> None:
    # when the janitor runs one day after the new objects were written
    report = sweep(world.settings, world.now)
    # then A (one-day retention) lost exactly its old objects and old metrics document
    assert world.present(world.a) == _expected(world.new[world.a])
    # and B (the 30-day default) kept everything
    assert world.present(world.b) == _expected(world.old[world.b], world.new[world.b])
    assert world.metrics_ids() == {f"{world.a}/cam-1/2", f"{world.b}/cam-1/1", f"{world.b}/cam-1/2"}
    # and the report counts what went, per bucket
    assert dict(report.by_client[world.a]) == {
        FRAMES_BUCKET: 2, ANNOTATIONS_BUCKET: 1, RENDERS_BUCKET: 2, REQUESTS_BUCKET: 2, METRICS: 1
    }  # fmt: skip
    assert sum(report.by_client[world.b].values()) == 0 and report.failed == []
    # and a second run finds nothing more
    again = sweep(world.settings, world.now)
    assert sum(again.totals.values()) == 0


def test_janitor_when_dry_run_then_counts_and_deletes_nothing(world: World) -> None:
    before = {c: world.present(c) for c in (world.a, world.b)}
    metrics_before = world.metrics_ids()
    # when a dry run goes as far as 40 days ahead (B's old and new data expired too)
    settings = world.settings.model_copy(update={"dry_run": True})
    report = sweep(settings, world.now + timedelta(days=40))
    # then it counts everything of both, and deletes nothing
    assert report.totals[FRAMES_BUCKET] == 8 and report.totals[METRICS] == 4
    assert {c: world.present(c) for c in (world.a, world.b)} == before
    assert world.metrics_ids() == metrics_before


def test_janitor_when_platform_default_shorter_then_clients_without_own_follow_it(
    world: World,
) -> None:
    # when the platform default is one day, B (no retention of its own) follows it
    settings = world.settings.model_copy(
        update={"retention": world.settings.retention.model_copy(update={"default_days": 1})}
    )
    sweep(settings, world.now)
    assert world.present(world.b) == _expected(world.new[world.b])
    assert world.present(world.a) == _expected(world.new[world.a])
