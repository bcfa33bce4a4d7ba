"""The MLflow model registry as clients may choose from it (read-only): shared models and
the caller's client's own; another client's model is a 404, as if it did not exist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.dashboard.deps import CurrentUser, Expensive, ResourcesDep
from vidpipe.modelref import MODEL_NAME_PATTERN
from vidpipe_ml.catalog import ModelVersionInfo, RegisteredModelInfo

router = APIRouter(tags=["models"], dependencies=[Expensive])


@router.get("/models", summary="Registered models you may use (shared and your client's)")
def list_models(user: CurrentUser, resources: ResourcesDep) -> list[RegisteredModelInfo]:
    return resources.catalog.list_models(user.client_id)


@router.get("/models/{model_name}/versions", summary="Versions with aliases and label sets")
def list_versions(
    user: CurrentUser,
    resources: ResourcesDep,
    model_name: Annotated[str, Path(pattern=MODEL_NAME_PATTERN)],
) -> list[ModelVersionInfo]:
    return resources.catalog.versions(model_name, user.client_id)
