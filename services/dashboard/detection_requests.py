"""On-demand detection requests, the dashboard's side: create, read, list, deliver.

Creating one (:func:`create_request`): the client's rate limit is counted; a retried POST
with the same ``Idempotency-Key`` gets the first request back (the same key with another
body is refused); the options are resolved against the client's config and the registry
(only models the client may use); the image is sniffed and limited
(:mod:`services.dashboard.images`): a refused image is *recorded* as a ``failed`` request
with the reason, and answered 422 (413 for too many bytes). An accepted image is stored at
:func:`vidpipe.keys.request_image`, the row inserted (``created``), and
:class:`~vidpipe.events.DetectionRequested` published on ``requests.v1``; if the broker does
not acknowledge, the request is marked failed and the caller gets 503.

Every read is scoped: another client's request is "not found". Delivering the result (the
websocket's result message, or a GET of a processed request) marks the request
``finished``; see :mod:`vidpipe.requests` for the lifecycle.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import psycopg
import sqlalchemy as sa
import sqlalchemy.exc
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.dashboard.auth import Principal
from services.dashboard.configs import check_classes
from services.dashboard.errors import Invalid, NotFound, TooLarge, Unavailable
from services.dashboard.images import CheckedImage, ImageRejected, Limits, check_image
from services.dashboard.publisher import PublishFailed
from services.dashboard.resources import Resources
from vidpipe import keys
from vidpipe import requests as ledger
from vidpipe.db import detection_requests
from vidpipe.events import DetectionRequested, encode_event
from vidpipe.modelref import ALIAS_PATTERN, MODEL_NAME_PATTERN, VERSION_PATTERN, ModelSelector
from vidpipe.requests import RequestRecord, RequestResult, RequestState
from vidpipe.topics import REQUESTS
from vidpipe_ml.catalog import ModelNotFound

log = logging.getLogger(__name__)
_T = detection_requests.c
IDEMPOTENCY_HEADER = "Idempotency-Key"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RequestOptions(BaseModel):
    """What to run: a model among those the client may use (default: the client's config),
    a score threshold and classes (defaults: the client's config; empty: every class)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str | None = Field(default=None, pattern=MODEL_NAME_PATTERN)
    model_alias: str | None = Field(default=None, pattern=ALIAS_PATTERN)
    model_version: str | None = Field(default=None, pattern=VERSION_PATTERN)
    score_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    classes: list[str] | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _selector(self) -> RequestOptions:
        if self.model_alias is not None and self.model_version is not None:
            raise ValueError("set at most one of model_alias or model_version")
        if self.model_name is None and (self.model_alias or self.model_version):
            raise ValueError("model_alias and model_version need a model_name")
        return self


class UrlRequestIn(RequestOptions):
    """A request for the image at ``image_url`` (http or https, where the platform's URL
    policy lets the client connect)."""

    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        json_schema_extra={
            "examples": [{"image_url": "https://images.example.com/gate.jpg", "classes": []}]
        },
    )

    image_url: str = Field(min_length=8, max_length=2048)


class RequestOut(BaseModel):
    """A request as the API answers it. ``timestamps`` in lifecycle order (null until
    reached); ``state`` is the latest reached. URLs are presigned and short-lived."""

    model_config = ConfigDict(protected_namespaces=())

    request_id: str
    client_id: str
    state: RequestState
    source: str
    created_by: str | None
    image_bytes: int | None
    width: int | None
    height: int | None
    model_name: str
    model_alias: str | None
    model_version: str | None
    score_threshold: float
    classes: list[str]
    timestamps: dict[str, datetime | None]
    failure_reason: str | None
    result: RequestResult | None
    image_url: str | None = None
    render_url: str | None = None
    urls_expire_in_s: int | None = None


class RequestPage(BaseModel):
    """A page of requests, newest first; ``next_before`` fetches the next page."""

    items: list[RequestOut]
    next_before: str | None


def out(record: RequestRecord) -> RequestOut:
    return RequestOut(
        **record.model_dump(
            include={
                "request_id",
                "client_id",
                "state",
                "source",
                "created_by",
                "image_bytes",
                "width",
                "height",
                "model_name",
                "model_alias",
                "model_version",
                "score_threshold",
                "classes",
                "failure_reason",
            }
        ),
        result=record.result,
        timestamps=record.timestamps,
    )


@dataclass(frozen=True)
class Resolved:
    selector: ModelSelector
    score_threshold: float
    classes: tuple[str, ...]


def resolve_options(resources: Resources, client_id: str, options: RequestOptions) -> Resolved:
    """The model, threshold and classes a request of ``client_id`` runs with.

    Raises:
        Invalid: the model (alias, version) is not one the client may use, a class is not a
            label of it, or no model is named and the client has no config.
    """
    config = resources.configs.get_client_config(client_id)
    classes = [c.strip() for c in options.classes or [] if c.strip()]
    if options.model_name is not None:
        selector = ModelSelector(
            name=options.model_name,
            alias=options.model_alias
            or (None if options.model_version is not None else "production"),
            version=options.model_version,
        )
    elif config is not None:
        selector = config.model
    else:
        raise Invalid("this client has no model config; name a model_name", field="model_name")
    if options.model_name is not None or options.classes:
        try:
            version = resources.catalog.resolve(selector, client_id)
        except ModelNotFound as exc:
            raise Invalid(str(exc), field=f"model_{exc.part}") from exc
        check_classes(version, classes)
    threshold = options.score_threshold
    if threshold is None:
        threshold = config.score_threshold if config is not None else 0.3
    if options.classes is None and config is not None and options.model_name is None:
        classes = list(config.classes_of_interest)
    return Resolved(selector, threshold, tuple(dict.fromkeys(classes)))


def _body_digest(data: bytes, source: str, options: RequestOptions) -> str:
    digest = hashlib.sha256(data)
    digest.update(f"\0{source}\0".encode())
    digest.update(options.model_dump_json().encode())
    return digest.hexdigest()


def _existing(conn: sa.Connection, client_id: str, key: str, digest: str) -> RequestRecord | None:
    row = conn.execute(
        sa.select(detection_requests).where(_T.client_id == client_id, _T.idempotency_key == key)
    ).one_or_none()
    if row is None:
        return None
    if row.body_sha256 != digest:
        raise Invalid(
            f"{IDEMPOTENCY_HEADER} {key!r} was used for another request body; use a new key",
            field=IDEMPOTENCY_HEADER,
        )
    return ledger.record_of(row)


@dataclass(frozen=True)
class NewRequest:
    """What the caller sent: image bytes from an upload or a URL, and the options."""

    client_id: str
    data: bytes
    source: Literal["upload", "url"]
    options: RequestOptions
    idempotency_key: str | None = None


def create_request(
    resources: Resources, conn: sa.Connection, principal: Principal, new: NewRequest
) -> RequestOut:
    """Validate, store, record and queue a request (see the module doc). Blocking.

    Raises:
        TooManyRequests: the client's request rate limit.
        Invalid: bad options, a reused idempotency key, or a refused image (recorded).
        TooLarge: too many image bytes (recorded).
        Unavailable: object storage or the broker did not answer.
    """
    resources.throttle.detection_request(new.client_id)
    key = new.idempotency_key
    if key is not None and not (1 <= len(key) <= 255 and key.isprintable()):
        raise Invalid(
            f"{IDEMPOTENCY_HEADER} must be 1-255 printable characters", field=IDEMPOTENCY_HEADER
        )
    digest = _body_digest(new.data, new.source, new.options)
    if key is not None and (found := _existing(conn, new.client_id, key, digest)) is not None:
        return out(found)
    resolved = resolve_options(resources, new.client_id, new.options)
    request_id = uuid.uuid4().hex
    settings = resources.settings
    row = {
        "request_id": request_id,
        "client_id": new.client_id,
        "created_by": principal.name,
        "source": new.source,
        "image_bytes": len(new.data),
        "model_name": resolved.selector.name,
        "model_alias": resolved.selector.alias,
        "model_version": resolved.selector.version,
        "score_threshold": resolved.score_threshold,
        "classes": list(resolved.classes),
        "idempotency_key": key,
        "body_sha256": digest,
    }
    try:
        image = check_image(
            new.data, Limits(settings.request_max_bytes, settings.request_max_pixels)
        )
    except ImageRejected as exc:
        _insert(conn, row | {"failed_at": sa.func.now(), "failure_reason": str(exc)})
        message = f"{exc} (recorded as failed request {request_id})"
        raise (TooLarge if exc.status == 413 else Invalid)(message, field="image") from exc
    _store(resources, new.client_id, request_id, image)
    created = _insert(conn, row | {"width": image.width, "height": image.height})
    if created is None:  # the same idempotency key won a race: that request is the answer
        assert key is not None
        found = _existing(conn, new.client_id, key, digest)
        assert found is not None
        return out(found)
    event = DetectionRequested(
        request_id=request_id,
        client_id=new.client_id,
        image=keys.request_image(new.client_id, request_id),
        width=image.width,
        height=image.height,
        model_name=resolved.selector.name,
        model_alias=resolved.selector.alias,
        model_version=resolved.selector.version,
        score_threshold=resolved.score_threshold,
        classes=resolved.classes,
        created_ts_ns=time.time_ns(),
    )
    try:
        resources.publisher.publish(REQUESTS, encode_event(event), key=request_id.encode())
    except PublishFailed as exc:
        ledger.mark_failed(conn, request_id, "the request queue did not accept it; try again")
        raise Unavailable("the request queue is unavailable; try again shortly") from exc
    log.info(
        "detection request created",
        extra={"request_id": request_id, "client_id": new.client_id, "format": image.format},
    )
    return out(created)


def _store(resources: Resources, client_id: str, request_id: str, image: CheckedImage) -> None:
    ref = keys.request_image(client_id, request_id)
    try:
        resources.objects.put(ref.bucket, ref.key, image.jpeg, "image/jpeg")
    except (BotoCoreError, ClientError) as exc:
        log.warning("object storage unavailable: %s", exc)
        raise Unavailable("object storage is unavailable; try again shortly") from exc


def _insert(conn: sa.Connection, values: dict[str, object]) -> RequestRecord | None:
    """Insert and commit; None when the idempotency key is taken already."""
    try:
        row = conn.execute(
            sa.insert(detection_requests).values(**values).returning(detection_requests)
        ).one()
    except sqlalchemy.exc.IntegrityError as exc:
        conn.rollback()
        if isinstance(exc.orig, psycopg.errors.UniqueViolation) and values.get("idempotency_key"):
            return None
        raise
    conn.commit()
    return ledger.record_of(row)


def visible_request(conn: sa.Connection, principal: Principal, request_id: str) -> RequestRecord:
    """The request when the caller may see it. Raises NotFound otherwise."""
    record = ledger.get_request(conn, request_id)
    if record is None or not principal.sees(record.client_id):
        raise NotFound(f"request {request_id!r} not found", field="request_id")
    return record


def with_urls(resources: Resources, record: RequestRecord) -> RequestOut:
    """The answer with presigned URLs of the stored image and the annotated one (each
    only when it exists)."""
    answer = out(record)
    expires = resources.settings.presign_expires_s
    image = keys.request_image(record.client_id, record.request_id)
    render = keys.request_render(record.client_id, record.request_id)
    try:
        if resources.objects.exists(image.bucket, image.key):
            answer.image_url = resources.presigner.presigned_get_url(
                image.bucket, image.key, expires
            )
        if record.processed_at is not None and resources.objects.exists(render.bucket, render.key):
            answer.render_url = resources.presigner.presigned_get_url(
                render.bucket, render.key, expires
            )
    except (BotoCoreError, ClientError) as exc:
        log.warning("object storage unavailable: %s", exc)
        raise Unavailable("object storage is unavailable; try again shortly") from exc
    answer.urls_expire_in_s = expires
    return answer


def deliver(resources: Resources, conn: sa.Connection, record: RequestRecord) -> RequestOut:
    """The full answer; a processed request is marked ``finished`` (it has been delivered)
    and answered as such."""
    answer = with_urls(resources, record)
    if record.state == "processed" and ledger.mark_finished(conn, record.request_id):
        updated = ledger.get_request(conn, record.request_id)
        assert updated is not None
        answer.state, answer.timestamps = updated.state, updated.timestamps
    return answer


def list_requests(
    conn: sa.Connection, client_id: str | None, limit: int, before: str | None
) -> RequestPage:
    """Requests of ``client_id`` (None: every client, for a superadmin), newest first.

    ``before`` is a page's ``next_before`` (``<created_at, µs since the epoch>~<request_id>``:
    URL-safe as it is).

    Raises:
        Invalid: a malformed ``before``.
    """
    query = sa.select(detection_requests)
    if client_id is not None:
        query = query.where(_T.client_id == client_id)
    if before is not None:
        stamp, _, last_id = before.partition("~")
        if not stamp.isdigit() or len(stamp) > 18:
            raise Invalid("before: not a next_before value", field="before")
        at = _EPOCH + timedelta(microseconds=int(stamp))
        query = query.where(sa.tuple_(_T.created_at, _T.request_id) < sa.tuple_(at, last_id))
    rows = conn.execute(
        query.order_by(_T.created_at.desc(), _T.request_id.desc()).limit(limit + 1)
    ).all()
    items = [out(ledger.record_of(r)) for r in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    cursor = None
    if last is not None:
        micros = (last.created_at - _EPOCH) // timedelta(microseconds=1)
        cursor = f"{micros}~{last.request_id}"
    return RequestPage(items=items, next_before=cursor)
