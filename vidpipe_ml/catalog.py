"""What the MLflow model registry offers: registered models, versions, aliases and the
label set of each version (version tag ``labels``, a JSON list, set at registration by
:mod:`vidpipe_ml.registry`). Client configs and training jobs are validated against it.

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

from vidpipe.modelref import MODEL_NAME_PATTERN, ModelSelector

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

    def list_models(self) -> list[RegisteredModelInfo]:
        """Every registered model, by name. Raises :class:`RegistryUnavailable`."""
        try:
            found = self._client.search_registered_models(max_results=200)
        except Exception as exc:
            raise _unavailable(exc) from exc
        return [
            RegisteredModelInfo(
                name=m.name,
                aliases={a: str(v) for a, v in (m.aliases or {}).items()},
                latest_version=max((str(v.version) for v in m.latest_versions or []), key=int)
                if m.latest_versions
                else None,
                description=m.description or None,
            )
            for m in sorted(found, key=lambda m: m.name)
        ]

    def versions(self, name: str) -> list[ModelVersionInfo]:
        """Every version of ``name``, newest first.

        Raises:
            ModelNotFound: no model of that name (``part="name"``).
            RegistryUnavailable: the registry failed.
        """
        if not re.fullmatch(MODEL_NAME_PATTERN, name):
            raise ModelNotFound(f"model {name!r} is not registered", "name")
        try:
            model = self._client.get_registered_model(name)
            found = self._client.search_model_versions(f"name='{name}'")
        except Exception as exc:
            if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
                raise ModelNotFound(f"model {name!r} is not registered", "name") from exc
            raise _unavailable(exc) from exc
        by_version: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        infos = [_version_info(v, sorted(by_version.get(str(v.version), []))) for v in found]
        return sorted(infos, key=lambda v: int(v.version), reverse=True)

    def resolve(self, selector: ModelSelector) -> ModelVersionInfo:
        """The version ``selector`` points to.

        Raises:
            ModelNotFound: the model, alias or version does not exist (``part`` names it).
            RegistryUnavailable: the registry failed.
        """
        versions = self.versions(selector.name)
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

    def version_of(self, selector: ModelSelector) -> str:
        """The version number ``selector`` points to (see :meth:`resolve`)."""
        return self.resolve(selector).version


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
