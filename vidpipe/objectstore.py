"""S3-compatible object storage (MinIO in production, SeaweedFS locally) through boto3.

boto3 clients are thread-safe, so async services call the blocking methods through
``asyncio.to_thread``; the connection pool is sized for that concurrency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from vidpipe.settings import S3Settings


class ObjectNotFound(KeyError):
    """The bucket/key does not exist."""


@dataclass(frozen=True)
class StoredObject:
    """One listed object: its key, ``last_modified`` (aware UTC, as the server reports it)
    and ``size`` in bytes."""

    key: str
    last_modified: datetime
    size: int


class DeleteFailed(RuntimeError):
    """The server refused to delete some keys of a batch (their codes in the message)."""


#: DeleteObjects takes at most this many keys per request (the S3 limit).
DELETE_BATCH = 1000


class ObjectStore:
    """Put/get/list bytes by (bucket, key). Keys are deterministic, so a replay overwrites."""

    def __init__(self, settings: S3Settings, max_connections: int = 32) -> None:
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=settings.access_key.get_secret_value(),
            aws_secret_access_key=settings.secret_key.get_secret_value(),
            region_name=settings.region,
            config=Config(
                max_pool_connections=max_connections,
                retries={"max_attempts": 5, "mode": "standard"},
                s3={"addressing_style": "path"},
                signature_version="s3v4",
            ),
        )

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self._client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, bucket: str, key: str) -> bytes:
        """Raises :class:`ObjectNotFound` when the key (or bucket) is missing."""
        try:
            body: bytes = self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "NoSuchBucket", "404"}:
                raise ObjectNotFound(f"s3://{bucket}/{key}") from exc
            raise
        return body

    def exists(self, bucket: str, key: str) -> bool:
        """Whether ``bucket/key`` exists (one HEAD request; the bytes are not read)."""
        try:
            self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}:
                return False
            raise
        return True

    def iter_keys(self, bucket: str, prefix: str = "") -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def delete(self, bucket: str, key: str) -> None:
        """Delete one object (deleting a missing key is not an error in S3)."""
        self._client.delete_object(Bucket=bucket, Key=key)

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[StoredObject]:
        """Every object under ``prefix``, in key order, a listing page (1,000) at a time."""
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield StoredObject(item["Key"], item["LastModified"], item.get("Size", 0))

    def delete_keys(self, bucket: str, keys: Sequence[str]) -> int:
        """Delete ``keys`` with DeleteObjects, :data:`DELETE_BATCH` per request; a missing
        key counts as deleted (S3 semantics). Returns ``len(keys)``.

        Raises:
            DeleteFailed: the server reported errors for some keys (the rest are deleted).
        """
        for start in range(0, len(keys), DELETE_BATCH):
            chunk = [{"Key": k} for k in keys[start : start + DELETE_BATCH]]
            answer = self._client.delete_objects(
                Bucket=bucket, Delete={"Objects": chunk, "Quiet": True}
            )
            errors = answer.get("Errors", [])
            if errors:
                shown = ", ".join(f"{e.get('Key')}: {e.get('Code')}" for e in errors[:5])
                raise DeleteFailed(f"s3://{bucket}: {len(errors)} keys not deleted ({shown})")
        return len(keys)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many were deleted."""
        return self.delete_keys(bucket, list(self.iter_keys(bucket, prefix)))

    def ensure_bucket(self, bucket: str) -> None:
        try:
            self._client.head_bucket(Bucket=bucket)
        except ClientError:
            self._client.create_bucket(Bucket=bucket)

    def presigned_get_url(self, bucket: str, key: str, expires_s: int = 300) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
        )
        return url

    async def aput(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self.put, bucket, key, data, content_type)

    async def aget(self, bucket: str, key: str) -> bytes:
        return await asyncio.to_thread(self.get, bucket, key)

    async def adelete(self, bucket: str, key: str) -> None:
        await asyncio.to_thread(self.delete, bucket, key)
