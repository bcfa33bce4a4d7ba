"""Walk the dashboard's own OpenAPI document, so tests cover every route, new ones included.

Each operation's request body comes from its schema's first example (a route without one
fails :func:`example_body`, which is the point: give new bodies an example).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

PUBLIC_TAG = "public"
METHODS = ("get", "post", "put", "patch", "delete")
#: Operations that end the caller's own session(s): walked last.
SESSION_ENDERS = frozenset(
    {
        ("post", "/logout"),
        ("post", "/api/v1/me/sessions/revoke"),
        ("post", "/account/sign-out-everywhere"),
        ("post", "/api/v1/me/password"),
        ("post", "/account/password"),
    }
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]
    document: dict[str, Any]

    @property
    def public(self) -> bool:
        return PUBLIC_TAG in self.spec.get("tags", [])

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{([^}]+)}", self.path)

    @property
    def query_params(self) -> list[str]:
        return [p["name"] for p in self.spec.get("parameters", []) if p["in"] == "query"]

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


def operations(app: FastAPI) -> list[Operation]:
    document = app.openapi()
    found = [
        Operation(method, path, spec, document)
        for path, item in document["paths"].items()
        for method, spec in item.items()
        if method in METHODS
    ]
    assert len(found) > 20, "the OpenAPI document lists the dashboard's routes"
    # Sign-out (and the like) ends the session the walk uses: keep them last.
    return sorted(found, key=lambda op: (op.method, op.path) in SESSION_ENDERS)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    resolved: dict[str, Any] = node
    return resolved


def example_body(op: Operation) -> tuple[str, dict[str, Any]] | None:
    """``("json" | "form", example)`` for operations with a body, else None."""
    content = op.spec.get("requestBody", {}).get("content", {})
    for media, kind in (
        ("application/json", "json"),
        ("application/x-www-form-urlencoded", "form"),
    ):
        if media in content:
            schema = _resolve(op.document, content[media]["schema"])
            examples = schema.get("examples")
            assert examples, f"{op}: give the request body model an example (json_schema_extra)"
            return kind, dict(examples[0])
    assert not content, f"{op}: unexpected request body types {list(content)}"
    return None


def body_fields(op: Operation) -> set[str]:
    content = op.spec.get("requestBody", {}).get("content", {})
    fields: set[str] = set()
    for media in content.values():
        fields |= set(_resolve(op.document, media["schema"]).get("properties", {}))
    return fields


def call(
    client: TestClient,
    op: Operation,
    path_values: Mapping[str, object],
    query: dict[str, str] | None = None,
    body_overrides: dict[str, Any] | None = None,
) -> Response:
    """Send ``op`` with path parameters filled from ``path_values`` and its example body."""
    url = op.path
    for name in op.path_params:
        url = url.replace("{" + name + "}", str(path_values[name]))
    params = {k: v for k, v in (query or {}).items() if k in op.query_params}
    if op.path.endswith("/live"):
        params["limit"] = "1"  # a live stream ends after one event
    body = example_body(op)
    kwargs: dict[str, Any] = {"params": params, "follow_redirects": False}
    if body is not None:
        kind, payload = body
        payload.update({k: v for k, v in (body_overrides or {}).items() if k in body_fields(op)})
        kwargs["json" if kind == "json" else "data"] = payload
    return client.request(op.method.upper(), url, **kwargs)
