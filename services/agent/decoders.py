"""How the agent builds a camera's decoder: the decoder service's own stream loop
(:class:`vidpipe.decoding.stream.StreamDecoder`), one per session, run as a task of the
agent's event loop (its reader thread does the blocking FFmpeg calls).

This module is the agent's one import of another service (import-linter allows exactly
this edge): the agent supervises the decoder's loop rather than copying it.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

from services.agent.supervisor import CameraSpec, StreamRefused
from vidpipe.decoding.publisher import DecoderService, FrameStore, Producer
from vidpipe.decoding.source import Backoff, SourceOpenError
from vidpipe.decoding.stream import StreamDecoder, StreamOptions, StreamStats
from vidpipe.urlpolicy import UrlPolicy, connect_url


@dataclass(frozen=True)
class DecoderOptions:
    """Per-agent decoder knobs: JPEG quality (1-100), frames buffered between read and
    upload, first and longest reconnect delay of a dropped live source (s)."""

    jpeg_quality: int = 90
    buffer_frames: int = 8
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 5.0


class DecoderStream:
    """One session of a camera's :class:`StreamDecoder` (a :class:`~services.agent.
    supervisor.Stream`): a refused or missing source raises :class:`StreamRefused`."""

    def __init__(self, decoder: StreamDecoder) -> None:
        self._decoder = decoder

    @property
    def stats(self) -> StreamStats:
        return self._decoder.stats

    async def run(self, stop: asyncio.Event) -> int:
        try:
            return await self._decoder.run(stop)
        except SourceOpenError as exc:
            # with reconnects on, a live source that merely fails to open is retried inside
            # the decoder; what reaches here is the URL policy or a missing/unreadable file
            raise StreamRefused(str(exc)) from exc


class DecoderLauncher:
    """``launcher(spec, session_id)``: a camera's decoder for one session, publishing
    through the agent's shared producer and store; every connection goes through the URL
    policy (resolved, checked, pinned)."""

    def __init__(
        self, store: FrameStore, producer: Producer, policy: UrlPolicy, options: DecoderOptions
    ) -> None:
        self._store = store
        self._producer = producer
        self._connect = functools.partial(connect_url, policy=policy)
        self._options = options
        self._backoff = Backoff(
            initial_s=options.reconnect_initial_s, max_s=options.reconnect_max_s
        )

    def __call__(self, spec: CameraSpec, session_id: str) -> DecoderStream:
        service = DecoderService(
            self._store,
            self._producer,
            spec.client_id,
            spec.camera_id,
            self._options.jpeg_quality,
            session_id=session_id,
        )
        options = StreamOptions(
            fps=spec.fps,
            reconnect=True,
            backoff=self._backoff,
            buffer_frames=self._options.buffer_frames,
            connect=self._connect,
        )
        return DecoderStream(StreamDecoder(service, spec.url, options))
