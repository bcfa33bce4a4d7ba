"""What the MLflow model registry offers: registered models, versions, aliases and the
label set of each version (version tag ``labels``, a JSON list, set at registration by
:mod:`vidpipe_ml.registry`). Client configs and training jobs are validated against it.

Every read takes the client it is for (``client_id``; ``None``: a platform administrator):
a client sees shared models and its own (:func:`vidpipe.modelref.model_usable_by`), and
another client's model answers exactly like one that does not exist.

Only the registry client (``mlflow-skinny``) is needed; no model is loaded here.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

from mlflow import MlflowClient
from pydantic import BaseModel

from vidpipe.ids import is_valid_id
from vidpipe.modelref import (
    MODEL_NAME_PATTERN,
    OWNER_TAG,
    SHARED_TAG,
    ModelSelector,
    model_owner,
    model_usable_by,
)

log = logging.getLogger(__name__)


class ModelVersionInfo(BaseModel):
    name: str
    version: str
    aliases: list[str]
    labels: list[str] | None
    status: str | None
    created_at: datetime | None
    run_id: str | None
    description: str | None


class RegisteredModelInfo(BaseModel):
    name: str
    aliases: dict[str, str]
    latest_version: str | None
    description: str | None
    shared: bool = False
    client_id: str | None = None


class ModelNotFound(LookupError):
    """The model, alias or version does not exist; ``part`` says which part of the
    reference is unknown."""

    def __init__(self, message: str, part: Literal["name", "alias", "version"]) -> None:
        super().__init__(message)
        self.part = part


class RegistryUnavailable(RuntimeError):
    """The registry could not be reached or answered with a server error."""


class ModelCatalog:
    """Blocking reads of the registry at ``tracking_uri`` (MlflowClient over HTTP)."""

    def __init__(self, tracking_uri: str) -> None:
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _search(self, filter_string: str | None) -> list[Any]:
        found: list[Any] = []
        token = None
        while True:
            page = self._client.search_registered_models(
                filter_string=filter_string, max_results=200, page_token=token
            )
            found += list(page)
            token = page.token
            if not token:
                return found

    def list_models(self, client_id: str | None = None) -> list[RegisteredModelInfo]:
        """The registered models ``client_id`` may use (shared and its own; ``None``: all),
        by name. Raises :class:`RegistryUnavailable`."""
        if client_id is not None and not is_valid_id(client_id):
            return []  # never part of a filter string
        filters = (
            [None]
            if client_id is None
            else [f"tags.`{SHARED_TAG}` = 'true'", f"tags.`{OWNER_TAG}` = '{client_id}'"]
        )
        try:
            found = {m.name: m for f in filters for m in self._search(f)}
        except Exception as exc:
            raise _unavailable(exc) from exc
        return [_model_info(m) for name, m in sorted(found.items())]

    def owner(self, name: str, client_id: str | None = None) -> tuple[bool, str | None]:
        """``(shared, owning client)`` of model ``name`` (see
        :func:`vidpipe.modelref.model_owner`).

        Raises:
            ModelNotFound: no such model, or one ``client_id`` may not use.
            RegistryUnavailable: the registry failed.
        """
        return model_owner(self._registered(name, client_id).tags or {})

    def _registered(self, name: str, client_id: str | None) -> Any:
        missing = ModelNotFound(f"model {name!r} is not registered", "name")
        if not re.fullmatch(MODEL_NAME_PATTERN, name):
            raise missing
        try:
            model = self._client.get_registered_model(name)
        except Exception as exc:
            if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
                raise missing from exc
            raise _unavailable(exc) from exc
        if not model_usable_by(model.tags or {}, client_id):
            raise missing  # another client's model reads exactly like an absent one
        return model

    def versions(self, name: str, client_id: str | None = None) -> list[ModelVersionInfo]:
        """Every version of ``name``, newest first, if ``client_id`` may use it.

        Raises:
            ModelNotFound: no model of that name, or another client's (``part="name"``).
            RegistryUnavailable: the registry failed.
        """
        model = self._registered(name, client_id)
        try:
            found = self._client.search_model_versions(f"name='{name}'")
        except Exception as exc:
            raise _unavailable(exc) from exc
        by_version: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        infos = [_version_info(v, sorted(by_version.get(str(v.version), []))) for v in found]
        return sorted(infos, key=lambda v: int(v.version), reverse=True)

    def resolve(self, selector: ModelSelector, client_id: str | None = None) -> ModelVersionInfo:
        """The version ``selector`` points to, of a model ``client_id`` may use.

        Raises:
            ModelNotFound: the model (or one ``client_id`` may use), alias or version does
                not exist (``part`` names it).
            RegistryUnavailable: the registry failed.
        """
        versions = self.versions(selector.name, client_id)
        if selector.alias is not None:
            match = [v for v in versions if selector.alias in v.aliases]
            if not match:
                known = ", ".join(sorted({a for v in versions for a in v.aliases})) or "none"
                raise ModelNotFound(
                    f"model {selector.name!r} has no alias {selector.alias!r} (aliases: {known})",
                    "alias",
                )
            return match[0]
        match = [v for v in versions if v.version == selector.version]
        if not match:
            known = ", ".join(v.version for v in versions) or "none"
            raise ModelNotFound(
                f"model {selector.name!r} has no version {selector.version!r} (versions: {known})",
                "version",
            )
        return match[0]

    def version_of(self, selector: ModelSelector, client_id: str | None = None) -> str:
        """The version number ``selector`` points to (see :meth:`resolve`)."""
        return self.resolve(selector, client_id).version


def _model_info(m: Any) -> RegisteredModelInfo:
    shared, owner = model_owner(m.tags or {})
    return RegisteredModelInfo(
        name=m.name,
        aliases={a: str(v) for a, v in (m.aliases or {}).items()},
        latest_version=max((str(v.version) for v in m.latest_versions or []), key=int)
        if m.latest_versions
        else None,
        description=m.description or None,
        shared=shared,
        client_id=owner,
    )


def _version_info(v: Any, aliases: list[str]) -> ModelVersionInfo:
    labels: list[str] | None = None
    raw = (v.tags or {}).get("labels")
    if raw:
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, list):
                labels = [str(x) for x in parsed]
        except ValueError:
            log.warning("model version has an unreadable labels tag", extra={"model": v.name})
    created = (
        datetime.fromtimestamp(v.creation_timestamp / 1000, tz=UTC)
        if v.creation_timestamp
        else None
    )
    return ModelVersionInfo(
        name=v.name,
        version=str(v.version),
        aliases=aliases,
        labels=labels,
        status=v.status,
        created_at=created,
        run_id=v.run_id,
        description=v.description or None,
    )


def _unavailable(exc: Exception) -> RegistryUnavailable:
    log.warning("model registry unavailable: %s", exc)
    return RegistryUnavailable("the model registry (MLflow) is unavailable; try again shortly")
