"""`vidpipe up/down/status` against real processes: health, idempotency, restarts, ownership."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import SecretStr

from infra.local import stack as local_stack
from infra.local.processes import StatePaths, StopPolicy, read_owned_pid, stop
from infra.local.services import BROKER_STORAGE_ENV
from vidpipe.settings import PostgresSettings, RedisSettings, ServiceSettings
from vidpipe.topics import TOPICS

pytestmark = pytest.mark.integration

SERVICE_NAMES = ["postgres", "redis", "s3", "kafka", "mlflow", "mongo"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def scratch_state() -> Iterator[Path]:
    """A state dir under var/ (not /tmp: pytest's 0700 dirs are closed to the postgres user)."""
    root = local_stack.DEFAULT_STATE_DIR / f"test-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    root.chmod(0o755)
    yield root
    local_stack.down(root)
    shutil.rmtree(root, ignore_errors=True)


def _status(settings: ServiceSettings) -> list[local_stack.ServiceStatus]:
    return local_stack.status(settings, local_stack.DEFAULT_STATE_DIR)


def test_status_when_stack_up_then_every_service_healthy(
    stack: None, stack_settings: ServiceSettings
) -> None:
    rows = _status(stack_settings)

    assert [row.name for row in rows] == SERVICE_NAMES
    unhealthy = {row.name: row.detail for row in rows if not row.healthy}
    assert unhealthy == {}
    for row in rows:
        assert row.url.split("://")[1].startswith(("127.0.0.1", "localhost"))
        assert row.owned == (row.pid is not None)


def test_up_when_called_again_then_nothing_restarts(
    stack: None, stack_settings: ServiceSettings
) -> None:
    before = {row.name: row.pid for row in _status(stack_settings)}

    local_stack.up(stack_settings, local_stack.DEFAULT_STATE_DIR)

    after = {row.name: row.pid for row in _status(stack_settings)}
    assert after == before


async def _admin_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def _produce_one(bootstrap: str, topic: str, value: bytes) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _read_values(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return [
            record.value
            for records in batches.values()
            for record in records
            if record.value is not None
        ]
    finally:
        await consumer.stop()


def test_kafka_when_broker_restarted_then_up_provisions_topics_again(
    stack_settings: ServiceSettings,
) -> None:
    """The default in-memory broker loses its topics on restart; `up` recreates them."""
    paths = StatePaths(local_stack.DEFAULT_STATE_DIR)
    kafka = next(s for s in local_stack.SERVICES if s.name == "kafka")
    pid = read_owned_pid(paths, "kafka", kafka.policy)
    if pid is None:
        pytest.skip("the Kafka-API broker on this port was not started by `vidpipe up`")
    bootstrap = stack_settings.kafka.bootstrap_servers

    stop("kafka", pid, kafka.policy)
    paths.pid_file("kafka").unlink()
    local_stack.up(stack_settings, local_stack.DEFAULT_STATE_DIR)

    assert read_owned_pid(paths, "kafka", kafka.policy) not in (None, pid)
    assert {spec.name for spec in TOPICS} <= set(asyncio.run(_admin_topics(bootstrap)))


def test_kafka_when_durable_broker_restarted_then_records_survive(
    stack_settings: ServiceSettings, scratch_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``VIDPIPE_LOCAL_BROKER_STORAGE=s3`` topics and records outlive the broker process."""
    monkeypatch.setenv(BROKER_STORAGE_ENV, "s3")
    port = _free_port()
    settings = stack_settings.model_copy(
        update={
            "kafka": stack_settings.kafka.model_copy(
                update={"bootstrap_servers": f"127.0.0.1:{port}"}
            )
        }
    )
    paths = StatePaths(scratch_state)
    paths.create()
    kafka = next(s for s in local_stack.SERVICES if s.name == "kafka")
    topic = f"durable-{uuid.uuid4().hex[:8]}"
    bootstrap = settings.kafka.bootstrap_servers

    local_stack.ensure_service(kafka, settings, paths)
    asyncio.run(_produce_one(bootstrap, topic, b"before-restart"))
    pid = read_owned_pid(paths, "kafka", kafka.policy)
    assert pid is not None
    stop("kafka", pid, kafka.policy)
    paths.pid_file("kafka").unlink()
    local_stack.ensure_service(kafka, settings, paths)

    assert read_owned_pid(paths, "kafka", kafka.policy) not in (None, pid)
    assert topic in asyncio.run(_admin_topics(bootstrap))
    assert asyncio.run(_read_values(bootstrap, topic)) == [b"before-restart"]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_up_when_ports_free_then_own_postgres_and_redis_start_and_down_stops_them(
    scratch_state: Path,
) -> None:
    settings = ServiceSettings(
        postgres=PostgresSettings(
            dsn=SecretStr(f"postgresql://postgres@127.0.0.1:{_free_port()}/vidpipe")
        ),
        redis=RedisSettings(url=f"redis://127.0.0.1:{_free_port()}/0"),
    )
    paths = StatePaths(scratch_state)
    paths.create()
    own = [s for s in local_stack.SERVICES if s.name in ("postgres", "redis")]

    for service in own:
        local_stack.ensure_service(service, settings, paths)
        if service.provision is not None:
            service.provision(settings)

    rows = {row.name: row for row in local_stack.status(settings, scratch_state)}
    assert rows["postgres"].healthy and rows["postgres"].owned
    assert rows["redis"].healthy and rows["redis"].owned
    local_stack.down(scratch_state)
    rows = {row.name: row for row in local_stack.status(settings, scratch_state)}
    assert not rows["postgres"].healthy and not rows["redis"].healthy
    assert not list(paths.run_dir.glob("*.pid"))


def test_read_owned_pid_when_pid_is_another_program_then_stale_file_removed(
    scratch_state: Path,
) -> None:
    paths = StatePaths(scratch_state)
    paths.create()
    other = subprocess.Popen(["sleep", "30"])  # e.g. a reused PID now running something else
    cmdline = Path(f"/proc/{other.pid}/cmdline")
    while b"sleep" not in cmdline.read_bytes():  # filled in just after exec returns
        time.sleep(0.01)
    try:
        paths.pid_file("kafka").write_text(f"{other.pid}\n")

        assert read_owned_pid(paths, "kafka", StopPolicy("sleep"), remove_stale=False) == other.pid
        assert read_owned_pid(paths, "kafka", StopPolicy("tansu")) is None
        assert not paths.pid_file("kafka").exists()
    finally:
        other.kill()
        other.wait()
