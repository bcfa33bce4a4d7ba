"""On-demand detection requests: create (upload or URL), read, list, and follow over a
websocket until the result arrives.

``POST /api/v1/requests`` takes ``multipart/form-data`` (an ``image`` file and optional
``model_name``, ``model_alias``, ``model_version``, ``score_threshold``, ``classes`` fields,
classes comma-separated) or JSON (:class:`UrlRequestIn`), and answers 202 with the request.
An ``Idempotency-Key`` header makes a retried POST return the first request.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from services.dashboard import detection_requests as dr
from services.dashboard.deps import CurrentUser, OperatorUser, ResourcesDep, SessionDep
from services.dashboard.errors import Invalid, TooLarge
from services.dashboard.images import ImageRejected, ImageUnreachable, fetch_image
from services.dashboard.settings import REQUEST_BODY_CEILING
from services.dashboard.tenancy import acting_client, client_filter
from vidpipe.ids import ID_PATTERN, REQUEST_ID_PATTERN

router = APIRouter(prefix="/requests", tags=["detection requests"])
RequestId = Annotated[str, Path(pattern=REQUEST_ID_PATTERN)]
_FORM_FIELDS = ("model_name", "model_alias", "model_version", "score_threshold", "classes")

_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "model_name": {"type": "string"},
                        "model_alias": {"type": "string"},
                        "model_version": {"type": "string"},
                        "score_threshold": {"type": "number", "minimum": 0, "maximum": 1},
                        "classes": {"type": "string", "description": "comma-separated"},
                    },
                }
            },
            "application/json": {"schema": dr.UrlRequestIn.model_json_schema()},
        },
    }
}


def options_of(fields: dict[str, Any]) -> dr.RequestOptions:
    """Options from form fields or a JSON object (classes: a list or comma-separated).

    Raises:
        Invalid: naming the first bad field.
    """
    values = {k: v for k, v in fields.items() if v not in (None, "")}
    if isinstance(values.get("classes"), str):
        values["classes"] = [c for c in values["classes"].split(",") if c.strip()]
    try:
        return dr.RequestOptions.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or None
        raise Invalid(f"{field or 'options'}: {error['msg']}", field=field) from exc


async def _upload(request: Request, max_bytes: int) -> tuple[bytes, dr.RequestOptions]:
    form = await request.form()
    image = form.get("image")
    if not isinstance(image, UploadFile):
        raise Invalid("send the picture as a file field named 'image'", field="image")
    data = await image.read(max_bytes + 1)  # one byte over is enough to refuse (and record)
    unknown = set(form.keys()) - {"image", "csrf_token", *_FORM_FIELDS}
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    return data, options_of({k: form.get(k) for k in _FORM_FIELDS})


async def fetch_url_image(resources: ResourcesDep, body: dr.UrlRequestIn) -> bytes:
    """The bytes at ``body.image_url`` (policy-checked). Raises Invalid or TooLarge."""
    try:
        return await run_in_threadpool(
            fetch_image,
            body.image_url,
            resources.url_rules.policy,
            resources.settings.request_max_bytes,
        )
    except ImageUnreachable as exc:
        raise Invalid(str(exc), field="image_url") from exc
    except ImageRejected as exc:
        raise TooLarge(str(exc), field="image_url") from exc


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Ask for detections on one image (upload or URL); follow it with GET or the socket",
    description="422 for a refused image (recorded as a failed request), 413 for too many bytes,"
    " 429 over the client's request rate. An `Idempotency-Key` header makes retries safe.",
    openapi_extra=_BODY_SCHEMA,
    max_body_size=REQUEST_BODY_CEILING,
)
async def create(
    request: Request,
    user: OperatorUser,
    conn: SessionDep,
    resources: ResourcesDep,
    client_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    idempotency_key: Annotated[str | None, Header(alias=dr.IDEMPOTENCY_HEADER)] = None,
) -> dr.RequestOut:
    acting = await run_in_threadpool(acting_client, conn, user, client_id)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        data, options = await _upload(request, resources.settings.request_max_bytes)
        source = "upload"
    elif content_type.startswith("application/json"):
        try:
            body = dr.UrlRequestIn.model_validate(json.loads(await request.body()))
        except (ValueError, ValidationError) as exc:
            raise Invalid(f"not a valid request body: {str(exc).splitlines()[0]}") from exc
        options = dr.RequestOptions.model_validate(body.model_dump(exclude={"image_url"}))
        data = await fetch_url_image(resources, body)
        source = "url"
    else:
        raise Invalid("send multipart/form-data with an image, or JSON with an image_url")
    new = dr.NewRequest(acting, data, source, options, idempotency_key)  # type: ignore[arg-type]
    return await run_in_threadpool(dr.create_request, resources, conn, user, new)


@router.get("", summary="The caller's requests, newest first (paginated)")
def list_requests(
    user: CurrentUser,
    conn: SessionDep,
    client_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> dr.RequestPage:
    return dr.list_requests(conn, client_filter(user, client_id), limit, before)


@router.get(
    "/{request_id}",
    summary="A request: state, timestamps, result (a processed result read here is finished)",
)
def get_request(
    user: CurrentUser, conn: SessionDep, resources: ResourcesDep, request_id: RequestId
) -> dr.RequestOut:
    record = dr.visible_request(conn, user, request_id)
    return dr.deliver(resources, conn, record)
