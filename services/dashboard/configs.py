"""A client's detection config, validated against the MLflow registry before it is saved.

Writes go through :meth:`vidpipe.configstore.ConfigStore.put_client_config`, which upserts
Postgres and invalidates the Redis cache, so running detectors apply it on their next batch.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.dashboard.errors import Invalid, NotFound
from services.dashboard.resources import Resources
from vidpipe.configstore import ClientConfig
from vidpipe.modelref import ALIAS_PATTERN, MODEL_NAME_PATTERN, VERSION_PATTERN, ModelSelector
from vidpipe_ml.catalog import ModelNotFound, ModelVersionInfo

log = logging.getLogger(__name__)

_EXAMPLE: dict[str, Any] = {
    "model_name": "coco-centernet",
    "model_alias": "production",
    "score_threshold": 0.4,
    "classes_of_interest": ["person", "car"],
}


class ConfigIn(BaseModel):
    """Exactly one of ``model_alias`` / ``model_version``; empty classes = every label."""

    model_config = ConfigDict(
        extra="forbid", protected_namespaces=(), json_schema_extra={"examples": [_EXAMPLE]}
    )

    model_name: str = Field(pattern=MODEL_NAME_PATTERN)
    model_alias: str | None = Field(default=None, pattern=ALIAS_PATTERN)
    model_version: str | None = Field(default=None, pattern=VERSION_PATTERN)
    score_threshold: float = Field(ge=0.0, le=1.0)
    classes_of_interest: list[str] = Field(default_factory=list, max_length=500)
    max_frame_age_ms: int | None = Field(
        default=None, ge=100, le=3_600_000, description="frame-age budget; null: the default"
    )

    @model_validator(mode="after")
    def _one_selector(self) -> ConfigIn:
        if (self.model_alias is None) == (self.model_version is None):
            raise ValueError("set exactly one of model_alias or model_version")
        return self


class ConfigOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    client_id: str
    model_name: str
    model_alias: str | None
    model_version: str | None
    score_threshold: float
    classes_of_interest: list[str]
    max_frame_age_ms: int | None
    model_uri: str


def _out(config: ClientConfig) -> ConfigOut:
    return ConfigOut(
        **config.model_dump(exclude={"classes_of_interest"}),
        classes_of_interest=list(config.classes_of_interest),
        model_uri=config.model_uri,
    )


def get_config(resources: Resources, client_id: str) -> ConfigOut:
    """The client's config (caller already scoped). NotFound when it has none yet."""
    config = resources.configs.get_client_config(client_id)
    if config is None:
        raise NotFound(f"client {client_id!r} has no model config yet")
    return _out(config)


def check_classes(version: ModelVersionInfo, classes: list[str]) -> None:
    """Raises Invalid naming the classes the model version does not detect."""
    if not classes:
        return
    if version.labels is None:
        raise Invalid(
            f"{version.name} version {version.version} has no 'labels' tag, so classes of"
            " interest cannot be checked; leave them empty",
            field="classes_of_interest",
        )
    unknown = [c for c in classes if c not in version.labels]
    if unknown:
        raise Invalid(
            f"not labels of {version.name} version {version.version}: {', '.join(unknown)}",
            field="classes_of_interest",
        )


def put_config(resources: Resources, client_id: str, body: ConfigIn) -> ConfigOut:
    """Validate against the registry (a shared model or the client's own: another client's
    is "not registered"), save, invalidate the cache; returns the saved config."""
    selector = ModelSelector(
        name=body.model_name, alias=body.model_alias, version=body.model_version
    )
    try:
        version = resources.catalog.resolve(selector, client_id)
    except ModelNotFound as exc:
        raise Invalid(str(exc), field=f"model_{exc.part}") from exc
    classes = list(dict.fromkeys(c.strip() for c in body.classes_of_interest if c.strip()))
    check_classes(version, classes)
    config = ClientConfig(
        client_id=client_id,
        model_name=body.model_name,
        model_alias=body.model_alias,
        model_version=body.model_version,
        score_threshold=body.score_threshold,
        classes_of_interest=tuple(classes),
        max_frame_age_ms=body.max_frame_age_ms,
    )
    resources.configs.put_client_config(config)
    log.info(
        "client config saved",
        extra={"client_id": client_id, "model_uri": config.model_uri, "version": version.version},
    )
    return _out(config)
