"""The ``remote`` backend: a model's core runs on a model server that speaks the Open
Inference Protocol (KServe v2 gRPC: Triton, OpenVINO Model Server, KServe, or
``vidpipe run model-server``); ``prepare`` and ``finish`` stay in the detector.

:class:`RemoteNetwork` is called like a local network (FP32 ``[B, 3, H, W]`` -> tuple of
tensors) from the detector's worker thread. It talks through KServe's own
``InferenceGRPCClient`` (an asyncio client) on an event loop of its own, in a daemon thread,
so the caller stays synchronous. Failures are classified:

- the server is unreachable, overloaded or slow (gRPC ``UNAVAILABLE``,
  ``DEADLINE_EXCEEDED``, ``RESOURCE_EXHAUSTED``, ``ABORTED``): retried with capped exponential
  backoff (tenacity) for up to ``retry_s``, then :class:`ModelServerUnavailable`; never a
  dead letter;
- anything else the server answers (unknown model, bad tensors): :class:`RemoteInferenceError`
  at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc
import torch
from kserve import InferenceGRPCClient
from prometheus_client import Counter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from vidpipe.events import ModelRef
from vidpipe_ml.inference import InferenceFailed
from vidpipe_ml.oip import BadTensors, decode_response, encode_request, served_by

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRIES = Counter(
    "vidpipe_remote_inference_retries_total",
    "Model server calls retried after a transient failure",
    ["code"],
)
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)


class RemoteInferenceError(InferenceFailed):
    """The model server refused the request (not a transient failure)."""


class ModelServerUnavailable(RuntimeError):
    """The model server stayed unreachable for the whole retry budget."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a gRPC failure worth retrying (see the module doc)."""
    return isinstance(exc, grpc.RpcError) and exc.code() in TRANSIENT


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    code = exc.code().name if isinstance(exc, grpc.RpcError) else "?"
    RETRIES.labels(code).inc()
    log.warning(
        "model server call failed (%s), retry %d in %.1f s",
        code, state.attempt_number, state.upcoming_sleep,
    )  # fmt: skip


class RemoteNetwork:
    """``ref``'s core on the model server at ``url`` (``host:port``).

    Args:
        timeout_s: one call's deadline.
        retry_s: how long transient failures are retried before giving up.
        max_request_bytes: a batch whose tensor is larger is sent in several requests
            (servers limit message sizes; KServe's default is 8 MiB).
    """

    def __init__(
        self,
        url: str,
        ref: ModelRef,
        timeout_s: float = 30.0,
        retry_s: float = 300.0,
        max_request_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.url = url
        self.ref = ref
        self.server_backend: str | None = None
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._max_request_bytes = max_request_bytes
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"oip-{ref.name}-{ref.version}", daemon=True
        )
        self._thread.start()
        self._client = self._run(self._make_client())

    async def _make_client(self) -> InferenceGRPCClient:
        # retries=0: tenacity owns the retry policy; no message size limits on our side
        return InferenceGRPCClient(self.url, timeout=self._timeout_s, retries=0)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The core's outputs for ``batch`` (FP32 ``[B, 3, H, W]``), concatenated along B.

        Raises:
            ModelServerUnavailable: transient failures outlasted ``retry_s``.
            RemoteInferenceError: the server refused the request or answered nonsense.
        """
        per_image = max(1, batch[:1].numel() * 4)
        step = max(1, self._max_request_bytes // per_image)
        parts = [self._infer(batch[start : start + step]) for start in range(0, len(batch), step)]
        if len(parts) == 1:
            return parts[0]
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))

    def _infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        request = encode_request(self.ref.name, self.ref.version, batch)
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=0.5, max=10.0),
            stop=stop_after_delay(self._retry_s),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            response = retrying(lambda: self._run(self._client.infer(request)))
        except grpc.RpcError as exc:
            if is_transient(exc):
                raise ModelServerUnavailable(
                    f"model server {self.url} unavailable for {self._retry_s:.0f} s: "
                    f"{exc.code().name} {exc.details()}"
                ) from exc
            raise RemoteInferenceError(
                f"model server {self.url} refused models:/{self.ref.name}/{self.ref.version}: "
                f"{exc.code().name} {exc.details()}"
            ) from exc
        if response.model_version not in (None, "", self.ref.version):
            raise RemoteInferenceError(
                f"asked for {self.ref.name}/{self.ref.version}, the server ran "
                f"version {response.model_version}"
            )
        self.server_backend = served_by(response) or self.server_backend
        try:
            return decode_response(response)
        except BadTensors as exc:
            raise RemoteInferenceError(f"model server {self.url}: {exc}") from exc

    def close(self) -> None:
        """Close the channel and stop the loop thread (idempotent)."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()
