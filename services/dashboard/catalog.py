"""What the MLflow model registry offers: registered models, versions, aliases and the label
set of each version (version tag ``labels``, a JSON list, set when a model is registered; see
services/models/registry.py). The dashboard validates client configs against it."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from services.dashboard.errors import Invalid, NotFound, Unavailable

log = logging.getLogger(__name__)

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


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


class ModelCatalog:
    """Blocking reads of the registry at ``tracking_uri`` (MlflowClient over HTTP)."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient  # heavy import: only where the catalog is built

        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def list_models(self) -> list[RegisteredModelInfo]:
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
        """Every version of ``name``, newest first. Raises NotFound for an unknown model."""
        if not re.fullmatch(MODEL_NAME_PATTERN, name):
            raise NotFound(f"model {name!r} is not registered", field="model_name")
        try:
            model = self._client.get_registered_model(name)
            found = self._client.search_model_versions(f"name='{name}'")
        except Exception as exc:
            raise _not_found_or_unavailable(exc, f"model {name!r} is not registered") from exc
        by_version: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        infos = [_version_info(v, sorted(by_version.get(str(v.version), []))) for v in found]
        return sorted(infos, key=lambda v: int(v.version), reverse=True)

    def resolve(self, name: str, alias: str | None, version: str | None) -> ModelVersionInfo:
        """The version ``name@alias`` or ``name/version`` points to.

        Raises Invalid naming the field (``model_name``, ``model_alias``, ``model_version``)
        when the model, alias or version does not exist.
        """
        try:
            versions = self.versions(name)
        except NotFound as exc:
            raise Invalid(exc.message, field="model_name") from exc
        if alias is not None:
            match = [v for v in versions if alias in v.aliases]
            if not match:
                known = ", ".join(sorted({a for v in versions for a in v.aliases})) or "none"
                raise Invalid(
                    f"model {name!r} has no alias {alias!r} (aliases: {known})",
                    field="model_alias",
                )
            return match[0]
        match = [v for v in versions if v.version == version]
        if not match:
            known = ", ".join(v.version for v in versions) or "none"
            raise Invalid(
                f"model {name!r} has no version {version!r} (versions: {known})",
                field="model_version",
            )
        return match[0]


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


def _not_found_or_unavailable(exc: Exception, message: str) -> Exception:
    if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
        return NotFound(message, field="model_name")
    return _unavailable(exc)


def _unavailable(exc: Exception) -> Unavailable:
    log.warning("model registry unavailable: %s", exc)
    return Unavailable("the model registry (MLflow) is unavailable; try again shortly")
