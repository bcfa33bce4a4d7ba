"""In-memory stand-ins for unit tests only (integration tests use the real services)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from aiokafka import ConsumerRecord

from vidpipe.events import FrameDecoded, ObjectRef
from vidpipe.objectstore import ObjectNotFound

#: The stream session of the unit tests' frames.
SESSION = "20261201t120000-0a0a"


def decoded(
    client: str, camera: str, seq: int, capture_ts_ns: int, session: str = SESSION
) -> FrameDecoded:
    """A 64x48 ``FrameDecoded`` whose JPEG lies at its key layout's place."""
    return FrameDecoded(
        client_id=client,
        camera_id=camera,
        session_id=session,
        frame_seq=seq,
        capture_ts_ns=capture_ts_ns,
        decoded_ts_ns=capture_ts_ns,
        width=64,
        height=48,
        image=ObjectRef(bucket="frames", key=f"{client}/{camera}/{session}/{seq}.jpg"),
    )


def record(topic: str, value: bytes, offset: int = 0, key: bytes | None = b"cam-1") -> Any:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value),
        headers=(),
    )


class FakeStore:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    async def aget(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise ObjectNotFound(f"s3://{bucket}/{key}") from None

    async def aput(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.objects[(bucket, key)] = data

    async def adelete(self, bucket: str, key: str) -> None:
        self.objects.pop((bucket, key), None)

    def iter_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        return iter(sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix)))


class FakeProducer:
    """Records sends; each send returns an already-resolved delivery future."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        self.sent.append((topic, value, key))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def on(self, topic: str) -> list[bytes]:
        return [value for t, value, _ in self.sent if t == topic]


class MemoryDatasetStore:
    """:class:`vidpipe.datasets.DatasetStore` over a dict ``{(bucket, key): bytes}``."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def get(self, bucket: str, key: str) -> bytes:
        """Raises :class:`vidpipe.objectstore.ObjectNotFound` for a missing key."""
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise ObjectNotFound(f"s3://{bucket}/{key}") from None

    def exists(self, bucket: str, key: str) -> bool:
        return (bucket, key) in self.objects

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.objects[(bucket, key)] = data

    def iter_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        return iter(sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix)))

    def ensure_bucket(self, bucket: str) -> None:
        return None
