"""The operations the pipeline relies on, against the local Kafka API, MLflow and Mongo."""

from __future__ import annotations

import uuid
from pathlib import Path

import mlflow
import pymongo
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from mlflow import MlflowClient

from vidpipe.settings import ServiceSettings

pytestmark = pytest.mark.integration


async def test_kafka_when_keyed_record_with_headers_then_consumer_group_reads_it(
    stack_settings: ServiceSettings, fresh_topic: str
) -> None:
    bootstrap = stack_settings.kafka.bootstrap_servers
    topic = fresh_topic
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 2, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            topic,
            b'{"frame": 1}',
            key=b"camera-7",
            headers=[("schema_version", b"1"), ("trace", b"abc")],
        )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"it-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await consumer.getone()
        await consumer.commit()
        committed = await consumer.committed(sent.topic_partition)
    finally:
        await consumer.stop()

    assert (record.key, record.value) == (b"camera-7", b'{"frame": 1}')
    assert list(record.headers) == [("schema_version", b"1"), ("trace", b"abc")]
    assert (record.partition, record.offset) == (sent.partition, sent.offset)
    assert committed == sent.offset + 1


def test_mlflow_when_artifact_logged_then_model_version_registered_and_aliased(
    stack: None, stack_settings: ServiceSettings, tmp_path: Path
) -> None:
    mlflow.set_tracking_uri(stack_settings.mlflow.tracking_uri)
    client = MlflowClient(stack_settings.mlflow.tracking_uri)
    name = f"it-model-{uuid.uuid4().hex[:8]}"
    weights = tmp_path / "weights.txt"
    weights.write_text("tiny artifact")
    experiment = client.create_experiment(name)

    try:
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_artifact(str(weights), artifact_path="model")
        client.create_registered_model(name)
        version = client.create_model_version(
            name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        )
        client.set_registered_model_alias(name, "production", version.version)
        downloaded = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{name}@production", dst_path=str(tmp_path / "out")
            )
        )

        assert client.get_model_version_by_alias(name, "production").version == version.version
        assert (downloaded / "weights.txt").read_text() == "tiny artifact"
    finally:
        if client.search_registered_models(filter_string=f"name = '{name}'"):
            client.delete_registered_model(name)
        client.delete_experiment(experiment)


def test_mongo_when_metrics_sink_operations_then_behave_like_mongodb(
    stack: None, stack_settings: ServiceSettings
) -> None:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        stack_settings.mongo.url, serverSelectionTimeoutMS=5000
    )
    collection = client[stack_settings.mongo.database][f"it_{uuid.uuid4().hex[:8]}"]
    try:
        inserted = collection.insert_many(
            [{"frame_id": f"f{i}", "camera_id": f"c{i % 2}", "age_ms": i} for i in range(20)]
        )
        upsert_new = collection.update_one(
            {"frame_id": "late"}, {"$set": {"camera_id": "c1", "age_ms": 99}}, upsert=True
        )
        upsert_old = collection.update_one(
            {"frame_id": "f3"}, {"$set": {"age_ms": 300}}, upsert=True
        )
        index = collection.create_index([("camera_id", 1), ("frame_id", 1)])
        found = list(
            collection.find(
                {"camera_id": "c1", "age_ms": {"$gte": 10}}, {"_id": 0, "frame_id": 1}
            ).sort("age_ms", 1)
        )

        assert len(inserted.inserted_ids) == 20
        assert upsert_new.upserted_id is not None
        assert (upsert_old.matched_count, upsert_old.modified_count) == (1, 1)
        assert index in collection.index_information()
        assert [doc["frame_id"] for doc in found] == [
            "f11",
            "f13",
            "f15",
            "f17",
            "f19",
            "late",
            "f3",
        ]
    finally:
        collection.drop()
        client.close()
