"""What `vidpipe up` provisions, checked through the same clients the services use."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import boto3
import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from infra.local.provision import MIGRATIONS_DIR, MLFLOW_DATABASE
from vidpipe.settings import ServiceSettings
from vidpipe.topics import BUCKETS, TOPICS

pytestmark = pytest.mark.integration


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_buckets_when_stack_up_then_all_exist(stack: None, stack_settings: ServiceSettings) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=stack_settings.s3.endpoint_url,
        aws_access_key_id=stack_settings.s3.access_key.get_secret_value(),
        aws_secret_access_key=stack_settings.s3.secret_key.get_secret_value(),
        region_name=stack_settings.s3.region,
    )

    names = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}

    assert set(BUCKETS) <= names


async def _partition_counts(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([spec.name for spec in TOPICS])
    finally:
        await admin.close()
    return {topic["topic"]: len(topic["partitions"]) for topic in described}


def test_topics_when_stack_up_then_partition_counts_match(
    stack: None, stack_settings: ServiceSettings
) -> None:
    counts = asyncio.run(_partition_counts(stack_settings.kafka.bootstrap_servers))

    assert counts == {spec.name: spec.partitions for spec in TOPICS}


@pytest.fixture
def vidpipe_db(stack: None, stack_settings: ServiceSettings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(stack_settings.postgres.dsn.get_secret_value(), autocommit=True) as conn:
        yield conn


def test_schema_when_migrated_then_tables_at_head(vidpipe_db: psycopg.Connection) -> None:
    tables = {
        row[0]
        for row in vidpipe_db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    version = vidpipe_db.execute("SELECT version_num FROM alembic_version").fetchone()

    assert {"clients", "cameras", "client_configs", "alembic_version"} <= tables
    assert version == (_head_revision(),)


def test_databases_when_stack_up_then_mlflow_database_exists(
    vidpipe_db: psycopg.Connection,
) -> None:
    row = vidpipe_db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (MLFLOW_DATABASE,))

    assert row.fetchone() == (1,)


def test_client_configs_when_alias_and_version_both_or_neither_then_rejected(
    vidpipe_db: psycopg.Connection,
) -> None:
    client_id = f"it-{uuid.uuid4().hex[:8]}"
    vidpipe_db.execute("INSERT INTO clients (client_id, name) VALUES (%s, 'Test')", (client_id,))
    try:
        insert = (
            "INSERT INTO client_configs (client_id, model_name, model_alias, model_version)"
            " VALUES (%s, 'coco-centernet', %s, %s)"
        )
        for alias, version in ((None, None), ("production", "3")):
            with pytest.raises(psycopg.errors.CheckViolation):
                vidpipe_db.execute(insert, (client_id, alias, version))
        with pytest.raises(psycopg.errors.CheckViolation):
            vidpipe_db.execute(
                "INSERT INTO client_configs (client_id, model_name, model_alias,"
                " score_threshold) VALUES (%s, 'm', 'a', 1.5)",
                (client_id,),
            )
        vidpipe_db.execute(insert, (client_id, "production", None))
        vidpipe_db.execute(
            "INSERT INTO cameras (camera_id, client_id, url) VALUES (%s, %s, %s)",
            (f"{client_id}-cam", client_id, "rtsp://127.0.0.1:8554/x"),
        )
        config = vidpipe_db.execute(
            "SELECT score_threshold, classes_of_interest, max_frame_age_ms FROM client_configs"
            " WHERE client_id = %s",
            (client_id,),
        ).fetchone()
        camera = vidpipe_db.execute(
            "SELECT fps, enabled FROM cameras WHERE client_id = %s", (client_id,)
        ).fetchone()
        assert config == (0.3, [], None)
        assert camera == (10.0, True)
    finally:
        vidpipe_db.execute("DELETE FROM clients WHERE client_id = %s", (client_id,))
    leftovers = vidpipe_db.execute(
        "SELECT (SELECT count(*) FROM cameras WHERE client_id = %s)"
        " + (SELECT count(*) FROM client_configs WHERE client_id = %s)",
        (client_id, client_id),
    ).fetchone()
    assert leftovers == (0,)  # ON DELETE CASCADE
