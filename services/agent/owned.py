"""The cameras an agent owns (those of its control partitions) and the decoders it runs
for them, converged towards their Postgres rows.

Each owned camera's row is kept, enabled or not, so every heartbeat names all of them:
a running decoder reports its supervisor's state, a disabled camera ``stopped``, a camera
beyond the agent's capacity ``unassigned`` (never dropped silently), a camera whose URL
cannot be opened (its sealing key is gone) ``failed``. Slots go to cameras in
``(client, camera)`` order, so a freed slot is given to the first one waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.agent.supervisor import CameraSpec, CameraSupervisor, Launch, RestartPolicy
from vidpipe.events import CameraState, CameraStatus

log = logging.getLogger(__name__)

CameraKey = tuple[str, str]


@dataclass(frozen=True)
class CameraRow:
    """A camera's row as the agent needs it: ``url`` is the full URL (None when it cannot
    be opened; ``error`` says why), ``fps`` the sampling rate (frames per second)."""

    client_id: str
    camera_id: str
    enabled: bool
    fps: float
    url: str | None
    error: str | None = None

    @property
    def key(self) -> CameraKey:
        return (self.client_id, self.camera_id)

    @property
    def spec(self) -> CameraSpec | None:
        """What its decoder runs; None when it has no usable URL."""
        if self.url is None:
            return None
        return CameraSpec(self.client_id, self.camera_id, self.url, self.fps)


@dataclass(frozen=True)
class CameraReport:
    """A camera's status (rates still zero), its frames read so far in ``status``'s session
    and when that session started (ns since epoch): the heartbeat turns counts into rates."""

    status: CameraStatus
    frames_read: int = 0
    session_started_ns: int | None = None


class OwnedCameras:
    """Owned camera rows and their supervised decoders (at most ``capacity`` running).

    Not thread-safe; the agent serialises calls that change it (one asyncio lock).
    """

    def __init__(self, launch: Launch, policy: RestartPolicy, capacity: int) -> None:
        self._launch = launch
        self._policy = policy
        self.capacity = capacity
        self._rows: dict[CameraKey, CameraRow] = {}
        self._running: dict[CameraKey, CameraSupervisor] = {}
        self._departed: dict[CameraKey, CameraStatus] = {}
        self._closed = False

    @property
    def keys(self) -> set[CameraKey]:
        return set(self._rows)

    def supervisor(self, key: CameraKey) -> CameraSupervisor | None:
        return self._running.get(key)

    async def apply(
        self, changes: Mapping[CameraKey, CameraRow | None], retry: Iterable[CameraKey] = ()
    ) -> None:
        """Set the rows of ``changes`` (None: the camera is gone, reported ``stopped`` once),
        then converge: stop decoders whose camera is gone, disabled or changed (URL or
        rate: restarted, a new session), start enabled cameras while slots are free.
        ``retry``: failed or ended cameras among these restart now."""
        for key, row in changes.items():
            if row is None:
                if self._rows.pop(key, None) is not None:
                    self._departed[key] = CameraStatus(
                        client_id=key[0], camera_id=key[1], state="stopped"
                    )
            else:
                self._rows[key] = row
                self._departed.pop(key, None)
        await self._converge()
        for key in retry:
            supervisor = self._running.get(key)
            if supervisor is not None:
                supervisor.retry()

    async def release(self, keys: Iterable[CameraKey]) -> None:
        """Stop the decoders of ``keys`` and forget them (their partitions went to another
        agent, which reports them from now on); returns once every decoder stopped."""
        keys = set(keys)
        await self._stop([k for k in keys if k in self._running])
        for key in keys:
            self._rows.pop(key, None)
            self._departed.pop(key, None)

    async def stop_all(self) -> None:
        """Stop every decoder (shutdown); rows are kept for a last heartbeat, which reports
        every camera ``stopped``. Nothing starts afterwards."""
        self._closed = True
        await self._stop(list(self._running))

    async def _converge(self) -> None:
        stale = []
        for key, supervisor in self._running.items():
            row = self._rows.get(key)
            if row is None or not row.enabled or row.spec != supervisor.spec:
                stale.append(key)
        await self._stop(stale)
        if self._closed:
            return
        for key in sorted(self._rows):
            if len(self._running) >= self.capacity:
                break
            row = self._rows[key]
            spec = row.spec
            if key in self._running or not row.enabled or spec is None:
                continue
            supervisor = CameraSupervisor(spec, self._launch, self._policy)
            self._running[key] = supervisor
            supervisor.start()
        waiting = sum(
            1 for k, r in self._rows.items() if r.enabled and r.url and k not in self._running
        )
        if waiting:
            log.warning(
                "%d camera(s) unassigned: capacity %d reached", waiting, self.capacity,
                extra={"capacity": self.capacity},
            )  # fmt: skip

    async def _stop(self, keys: list[CameraKey]) -> None:
        supervisors = [self._running.pop(key) for key in keys]
        await asyncio.gather(*(s.stop() for s in supervisors))

    def reports(self, now_ns: int | None = None) -> list[CameraReport]:
        """Every owned camera's status, in ``(client, camera)`` order, then the cameras gone
        since the last call (``stopped``, reported once)."""
        now_ns = now_ns or time.time_ns()
        found = [self._report(key, row, now_ns) for key, row in sorted(self._rows.items())]
        found += [CameraReport(status) for status in self._departed.values()]
        self._departed.clear()
        return found

    def _report(self, key: CameraKey, row: CameraRow, now_ns: int) -> CameraReport:
        supervisor = self._running.get(key)
        if supervisor is None:
            state: CameraState
            if not row.enabled or self._closed:
                state = "stopped"
            elif row.url is None:
                state = "failed"
            else:
                state = "unassigned"
            status = CameraStatus(
                client_id=row.client_id, camera_id=row.camera_id, state=state, last_error=row.error
            )
            return CameraReport(status)
        stats = supervisor.stream.stats if supervisor.stream is not None else None
        status = CameraStatus(
            client_id=row.client_id,
            camera_id=row.camera_id,
            state=supervisor.state(now_ns),
            session_id=supervisor.session_id,
            frames_published=stats.frames_published if stats else 0,
            frames_skipped=stats.frames_skipped if stats else 0,
            last_capture_ts_ns=stats.last_capture_ns if stats else None,
            reconnects=stats.reconnects if stats else 0,
            restarts=supervisor.restarts,
            last_error=supervisor.last_error,
        )
        if stats is None:
            return CameraReport(status)
        return CameraReport(status, stats.frames_read, stats.started_ns)
