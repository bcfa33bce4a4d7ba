"""References to models in the MLflow registry: the one parser and builder.

A reference selects a registered model version either through an alias or by number::

    models:/coco-centernet@production     NAME@ALIAS (the alias may move: promotions)
    models:/acme-ssdlite/3                NAME/VERSION (fixed)

The ``models:/`` prefix is optional on input. Client configs, training jobs (base model),
accuracy runs, promotions and the CLI all go through :func:`parse_model_ref`; the resolved
``(name, version)`` pair that events carry is :class:`vidpipe.events.ModelRef`.

Ownership: every registered model carries :data:`OWNER_TAG` (the client that trained it) or
:data:`SHARED_TAG` (``coco-centernet``); a client sees and uses shared models and its own
(:func:`model_usable_by`), and another client's model is "not registered" to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"
URI_PREFIX = "models:/"
REF_RULE = "models:/NAME@ALIAS or models:/NAME/VERSION (the models:/ prefix is optional)"
_REF = re.compile(
    r"^(?:models:/)?(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})"
    r"(?:@(?P<alias>[A-Za-z0-9][A-Za-z0-9_-]{0,63})|/(?P<version>[1-9][0-9]{0,8}))$"
)


class ModelSelector(BaseModel):
    """A registered model plus exactly one of ``alias`` / ``version``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    alias: str | None = Field(default=None, pattern=ALIAS_PATTERN)
    version: str | None = Field(default=None, pattern=VERSION_PATTERN)

    @model_validator(mode="after")
    def _one_selector(self) -> Self:
        if (self.alias is None) == (self.version is None):
            raise ValueError("set exactly one of alias or version")
        return self

    @property
    def short(self) -> str:
        """``NAME@ALIAS`` or ``NAME/VERSION``."""
        return (
            f"{self.name}@{self.alias}" if self.alias is not None else f"{self.name}/{self.version}"
        )

    @property
    def uri(self) -> str:
        """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``, as MLflow loads it."""
        return URI_PREFIX + self.short

    def __str__(self) -> str:
        return self.uri


def parse_model_ref(text: str) -> ModelSelector:
    """Parse ``[models:/]NAME@ALIAS`` or ``[models:/]NAME/VERSION``.

    Raises:
        ValueError: any other form (the message states :data:`REF_RULE`).
    """
    match = _REF.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a model reference: use {REF_RULE}")
    return ModelSelector(name=match["name"], alias=match["alias"], version=match["version"])


def pinned(name: str, version: str) -> ModelSelector:
    """The fixed reference ``NAME/VERSION``."""
    return ModelSelector(name=name, version=version)


#: Registered-model tag naming the client that owns a model (set at registration).
OWNER_TAG = "vidpipe.client"
#: Registered-model tag marking a model every client may use (``"true"``).
SHARED_TAG = "vidpipe.shared"


def owner_tags(owner: str | None) -> dict[str, str]:
    """The registered-model tags of a model owned by ``owner`` (``None``: shared)."""
    return {SHARED_TAG: "true"} if owner is None else {OWNER_TAG: owner}


def model_owner(tags: Mapping[str, str]) -> tuple[bool, str | None]:
    """``(shared, owner)`` of a registered model from its tags; ``(False, None)`` for a
    model registered before owners were recorded (platform administrators only)."""
    return tags.get(SHARED_TAG) == "true", tags.get(OWNER_TAG) or None


def model_usable_by(tags: Mapping[str, str], client_id: str | None) -> bool:
    """Whether ``client_id`` may see and use the model (shared, or its own); ``None``
    stands for a platform administrator, who may use every model."""
    if client_id is None:
        return True
    shared, owner = model_owner(tags)
    return shared or owner == client_id
