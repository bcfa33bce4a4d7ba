"""``vidpipe run agent``: one per host. Joins the consumer group on ``cameras.control.v1``,
runs the decoders of the cameras in the partitions Kafka assigns it (the logic is
:class:`services.agent.service.Agent`) and reports them every few seconds on
``agents.status.v1``.

Start-up: logging, stop signal, metrics/probes -> Postgres, producer -> consumer group join
(the rebalance listener starts the assigned cameras) -> ready -> heartbeats and control
events until SIGTERM. Shutdown: decoders stopped (their last frames published) -> a last
heartbeat marked ``stopping`` -> the group left (survivors take the partitions at once,
not after the session timeout) -> producer flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from aiokafka import AIOKafkaProducer

from services.agent.decoders import DecoderLauncher, DecoderOptions
from services.agent.heartbeat import Heartbeats, default_agent_id, vidpipe_version
from services.agent.owned import OwnedCameras
from services.agent.ownership import ControlListener
from services.agent.rows import CameraRows
from services.agent.service import Agent
from services.agent.settings import AgentSettings
from services.agent.supervisor import RestartPolicy
from vidpipe.bus import DeadLetterPublisher, make_consumer, make_producer
from vidpipe.cameras import UrlCipher
from vidpipe.db import create_engine
from vidpipe.events import encode_event
from vidpipe.logs import configure_logging
from vidpipe.objectstore import ObjectStore
from vidpipe.runtime import READY, install_stop_signal, serve_metrics
from vidpipe.topics import AGENTS_STATUS, CAMERAS_CONTROL
from vidpipe.urlpolicy import UrlPolicy

log = logging.getLogger("services.agent")

#: Seconds a heartbeat may take to be acknowledged before it is given up (the next one
#: follows anyway).
HEARTBEAT_TIMEOUT_S = 4.0


def owned_cameras(settings: AgentSettings, producer: AIOKafkaProducer) -> OwnedCameras:
    options = DecoderOptions(
        jpeg_quality=settings.jpeg_quality,
        buffer_frames=settings.buffer_frames,
        reconnect_initial_s=settings.reconnect_initial_s,
        reconnect_max_s=settings.reconnect_max_s,
    )
    launch = DecoderLauncher(
        ObjectStore(settings.s3), producer, UrlPolicy.of(settings.cameras), options
    )
    policy = RestartPolicy(
        initial_s=settings.restart_initial_s,
        max_s=settings.restart_max_s,
        crash_limit=settings.crash_limit,
        crash_window_s=settings.crash_window_s,
        failed_retry_s=settings.failed_retry_s,
    )
    return OwnedCameras(launch, policy, settings.capacity)


async def send_heartbeat(
    producer: AIOKafkaProducer, beats: Heartbeats, agent: Agent, stopping: bool = False
) -> None:
    """Publish one heartbeat (acks=all); a failure is logged, the next one follows."""
    beat = beats.build(agent.cameras.reports(), agent.partitions, stopping=stopping)
    try:
        await asyncio.wait_for(
            producer.send_and_wait(AGENTS_STATUS, encode_event(beat), key=beats.agent_id.encode()),
            HEARTBEAT_TIMEOUT_S,
        )
    except Exception as exc:
        log.warning("heartbeat not sent: %s", f"{type(exc).__name__}: {exc}")


async def heartbeat_loop(
    producer: AIOKafkaProducer, beats: Heartbeats, agent: Agent, interval_s: float
) -> None:
    """A heartbeat every ``interval_s`` seconds, on a fixed grid (a slow send does not
    shift the next)."""
    next_at = time.monotonic()
    while True:
        await send_heartbeat(producer, beats, agent)
        next_at += interval_s
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def run(settings: AgentSettings) -> None:
    stop = install_stop_signal()
    serve_metrics(settings.metrics_port, settings.metrics_host)
    agent_id = settings.agent_id or default_agent_id()
    engine = create_engine(settings.postgres, pool_size=2)
    producer = make_producer(settings.kafka)
    consumer = make_consumer(settings.kafka, settings.group_id)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(engine.dispose)
        await producer.start()
        stack.push_async_callback(producer.stop)
        agent = Agent(
            owned_cameras(settings, producer),
            CameraRows(engine, UrlCipher.of(settings.cameras)),
            DeadLetterPublisher(producer, "agent"),
            reconcile_s=settings.reconcile_s,
        )
        beats = Heartbeats(
            agent_id, socket.gethostname(), vidpipe_version(), settings.capacity, time.time_ns()
        )
        listener = ControlListener(consumer, CAMERAS_CONTROL, agent.assigned, agent.revoked)
        consumer.subscribe([CAMERAS_CONTROL], listener=listener)
        await consumer.start()
        stack.push_async_callback(consumer.stop)  # leaves the group, after the decoders
        log.info(
            "agent started", extra={"agent_id": agent_id, "group": settings.group_id,
                                    "capacity": settings.capacity},
        )  # fmt: skip
        READY.labels("agent").set(1)
        heartbeats = asyncio.create_task(
            heartbeat_loop(producer, beats, agent, settings.heartbeat_s), name="heartbeats"
        )
        try:
            await agent.consume(consumer, stop)
        finally:
            READY.labels("agent").set(0)
            await agent.shutdown()
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats
            await send_heartbeat(producer, beats, agent, stopping=True)
    log.info("agent stopped", extra={"agent_id": agent_id})


def main(settings: AgentSettings | None = None) -> None:
    settings = settings or AgentSettings()
    configure_logging(settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
