"""``/api/v1/requests/ws``: send an image (or a request id), receive its state changes and
finally the result, pushed.

Authentication as for the rest of the API: an ``Authorization: Bearer`` API key, or the
session cookie, in which case the ``Origin`` must be the dashboard's own (a cross-site page
cannot ride the cookie). Creating a request needs the operator role; following one, only
that the caller may see it. A caller holds at most a few sockets and live streams at once.

Protocol (JSON text messages unless said otherwise):

client -> server, first message, one of:
  - a binary message: the image, with the client's default options;
  - ``{"request_id": "..."}``: follow a request created before (e.g. by POST);
  - ``{"image_url": "...", <options>}``: a request for the image at a URL;
  - ``{<options>}`` (``model_name``, ``model_alias``, ``model_version``,
    ``score_threshold``, ``classes``, and ``client_id`` for a superadmin), then a binary
    message with the image.
server -> client:
  - ``{"type": "state", "request_id", "state", "timestamps"}`` on every change;
  - ``{"type": "result", "request": <RequestOut>}`` with the detections and presigned URLs
    of the image and the annotated image, then the ``finished`` state, then close (1000);
  - ``{"type": "failed", "request": <RequestOut>}`` for a failed request, then close;
  - ``{"type": "error", "status", "detail", "field"}`` then close with code 4000 + status
    (4401, 4403, 4404, 4413, 4422, 4429, 4503, 4408 for no result in time).
A client that closes before the result gets its request marked ``interrupted``; one still
waiting to be processed is then skipped by the detector.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from services.dashboard import detection_requests as dr
from services.dashboard.api.requests import options_of
from services.dashboard.auth import Principal, Role
from services.dashboard.deps import authenticate
from services.dashboard.errors import DashboardError, Forbidden, Invalid, TimedOut, TooLarge
from services.dashboard.images import ImageRejected, ImageUnreachable, fetch_image
from services.dashboard.resources import Resources
from services.dashboard.tenancy import acting_client
from services.dashboard.throttle import caller_key
from vidpipe import requests as ledger
from vidpipe.requests import RequestRecord

log = logging.getLogger(__name__)

socket_router = APIRouter(prefix="/api/v1")
#: the longest the server waits for the client's first message or its image (s)
HELLO_TIMEOUT_S = 30.0


class _Gone(Exception):
    """The client closed the socket."""


def _check_origin(websocket: WebSocket) -> None:
    """A cookie-authenticated socket must come from the dashboard's own pages."""
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host")
    if origin is None or host is None or urlsplit(origin).netloc != host:
        raise Forbidden("a signed-in socket must come from the dashboard's own pages")


def _principal(websocket: WebSocket, resources: Resources) -> Principal:
    with resources.engine.connect() as conn:
        principal = authenticate(websocket, conn, resources)
    if principal.via_session:
        _check_origin(websocket)
    return principal


@socket_router.websocket("/requests/ws")
async def request_socket(websocket: WebSocket) -> None:
    resources: Resources = websocket.app.state.resources
    await websocket.accept()
    try:
        principal = await anyio.to_thread.run_sync(_principal, websocket, resources)
        who = caller_key(principal)
        slot = await anyio.to_thread.run_sync(resources.live_slots.acquire, who)
    except DashboardError as exc:
        await _refuse(websocket, exc)
        return
    try:
        await RequestSocket(websocket, resources, principal).run()
    finally:
        await anyio.to_thread.run_sync(resources.live_slots.release, who, slot)


async def _refuse(websocket: WebSocket, exc: DashboardError) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_json(
            {"type": "error", "status": exc.status, "detail": exc.message, "field": exc.field}
        )
        await websocket.close(code=4000 + exc.status, reason=exc.message[:120])


class RequestSocket:
    """One socket's conversation (see the module doc)."""

    def __init__(self, websocket: WebSocket, resources: Resources, principal: Principal) -> None:
        self._ws = websocket
        self._resources = resources
        self._principal = principal
        self._gone = asyncio.Event()

    async def run(self) -> None:
        try:
            request_id = await self._start()
        except _Gone:
            return
        except DashboardError as exc:
            await _refuse(self._ws, exc)
            return
        watcher = asyncio.create_task(self._watch())
        try:
            await self._follow(request_id)
        except asyncio.CancelledError:
            # the server dropped the connection (shutdown, or a test client): not delivered
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._interrupt, request_id)
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _receive(self) -> dict[str, Any]:
        try:
            message = await asyncio.wait_for(self._ws.receive(), HELLO_TIMEOUT_S)
        except TimeoutError as exc:
            raise Invalid(f"nothing received within {HELLO_TIMEOUT_S:.0f} s") from exc
        if message["type"] == "websocket.disconnect":
            raise _Gone
        return dict(message)

    async def _start(self) -> str:
        """Read what the client asks for; the id of the request to follow."""
        first = await self._receive()
        if first.get("bytes") is not None:
            return await self._create(first["bytes"], "upload", {})
        try:
            hello = json.loads(first.get("text") or "")
        except ValueError as exc:
            raise Invalid("the first message must be JSON or the image") from exc
        if not isinstance(hello, dict):
            raise Invalid("the first message must be a JSON object or the image")
        if "request_id" in hello:
            return await self._existing(str(hello["request_id"]))
        if "image_url" in hello:
            return await self._create(b"", "url", hello)
        image = await self._receive()
        if image.get("bytes") is None:
            raise Invalid("after the options, send the image as a binary message", "image")
        return await self._create(image["bytes"], "upload", hello)

    async def _existing(self, request_id: str) -> str:
        def find() -> RequestRecord:
            with self._resources.engine.connect() as conn:
                return dr.visible_request(conn, self._principal, request_id)

        return (await anyio.to_thread.run_sync(find)).request_id

    async def _create(self, data: bytes, source: str, fields: dict[str, Any]) -> str:
        if not self._principal.role.at_least(Role.operator):
            raise Forbidden(f"this needs the operator role; you are {self._principal.role}")
        requested = fields.pop("client_id", None)
        image_url = fields.pop("image_url", None)
        options = options_of(fields)
        if image_url is not None:
            try:
                url_in = dr.UrlRequestIn(image_url=str(image_url), **options.model_dump())
            except ValidationError as exc:
                raise Invalid("image_url: not a URL", field="image_url") from exc
            data = await self._fetch(url_in.image_url)

        def create() -> dr.RequestOut:
            with self._resources.engine.connect() as conn:
                acting = acting_client(
                    conn, self._principal, None if requested is None else str(requested)
                )
                new = dr.NewRequest(acting, data, source, options)  # type: ignore[arg-type]
                return dr.create_request(self._resources, conn, self._principal, new)

        created = await anyio.to_thread.run_sync(create)
        return created.request_id

    async def _fetch(self, url: str) -> bytes:
        settings = self._resources.settings
        try:
            return await anyio.to_thread.run_sync(
                fetch_image, url, self._resources.url_rules.policy, settings.request_max_bytes
            )
        except ImageUnreachable as exc:
            raise Invalid(str(exc), field="image_url") from exc
        except ImageRejected as exc:
            raise TooLarge(str(exc), field="image_url") from exc

    async def _watch(self) -> None:
        """Notice the client leaving (anything else it sends is ignored)."""
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while (await self._ws.receive())["type"] != "websocket.disconnect":
                pass
        self._gone.set()

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await self._ws.send_json(message)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self._gone.set()
            raise _Gone from exc

    def _load(self, request_id: str) -> RequestRecord:
        with self._resources.engine.connect() as conn:
            record = ledger.get_request(conn, request_id)
        assert record is not None  # rows are never deleted while their client exists
        return record

    async def _state(self, record: RequestRecord) -> None:
        await self._send(
            {
                "type": "state",
                "request_id": record.request_id,
                "state": record.state,
                "timestamps": {
                    k: None if v is None else v.isoformat() for k, v in record.timestamps.items()
                },
            }
        )

    async def _follow(self, request_id: str) -> None:
        """Push state changes until the request ends; deliver the result; mark
        ``interrupted`` when the client leaves first."""
        settings = self._resources.settings
        deadline = time.monotonic() + settings.request_wait_s
        last = None
        try:
            while True:
                if self._gone.is_set():
                    raise _Gone
                record = await anyio.to_thread.run_sync(self._load, request_id)
                if record.state != last:
                    last = record.state
                    if record.state != "finished":  # delivery says finished itself
                        await self._state(record)
                if record.state in ("processed", "finished"):
                    await self._deliver(record)
                    return
                if record.state in ("failed", "interrupted"):
                    answer = dr.out(record).model_dump(mode="json")
                    await self._send({"type": "failed", "request": answer})
                    await self._close()
                    return
                if time.monotonic() > deadline:
                    raise TimedOut(
                        f"no result within {settings.request_wait_s:.0f} s; the request is"
                        " interrupted"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._gone.wait(), settings.request_poll_s)
        except _Gone:
            await anyio.to_thread.run_sync(self._interrupt, request_id)
        except TimedOut as exc:
            await anyio.to_thread.run_sync(self._interrupt, request_id)
            await _refuse(self._ws, exc)

    def _interrupt(self, request_id: str) -> None:
        with self._resources.engine.connect() as conn:
            if ledger.mark_interrupted(conn, request_id):
                log.info("request interrupted: the client left", extra={"request_id": request_id})

    async def _deliver(self, record: RequestRecord) -> None:
        """Wait a little for the annotated image, send the result, mark finished."""
        resources = self._resources
        deadline = time.monotonic() + resources.settings.request_render_wait_s
        answer = await anyio.to_thread.run_sync(dr.with_urls, resources, record)
        while answer.render_url is None and time.monotonic() < deadline:
            if self._gone.is_set():
                raise _Gone
            await asyncio.sleep(resources.settings.request_poll_s)
            answer = await anyio.to_thread.run_sync(dr.with_urls, resources, record)
        await self._send({"type": "result", "request": answer.model_dump(mode="json")})
        await asyncio.sleep(0)  # let the watcher see a close that raced the result
        if self._gone.is_set():
            raise _Gone

        def finish() -> RequestRecord:
            with resources.engine.connect() as conn:
                ledger.mark_finished(conn, record.request_id)
                updated = ledger.get_request(conn, record.request_id)
            assert updated is not None
            return updated

        await self._state(await anyio.to_thread.run_sync(finish))
        await self._close()

    async def _close(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._ws.close(code=1000)
