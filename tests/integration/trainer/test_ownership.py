"""The trainer's own ownership checks on the real registry: it starts only from shared models
or its client's, and never registers a version into another owner's model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from services.trainer.service import load_base_model
from services.trainer.settings import TrainerSettings
from vidpipe.modelref import owner_tags
from vidpipe.settings import ServiceSettings
from vidpipe_ml.registry import ModelOwnershipError, log_registered_model

pytestmark = pytest.mark.integration


@pytest.fixture
def foreign_model(stack: None, stack_settings: ServiceSettings) -> Iterator[str]:
    """A registry entry owned by another client (no artifact: the check comes first)."""
    uri = stack_settings.mlflow.tracking_uri
    registry = MlflowClient(uri, uri)
    owner = f"other-{uuid.uuid4().hex[:6]}"
    name = f"{owner}-ssdlite320_mobilenet_v3_large"
    registry.create_registered_model(name, tags=owner_tags(owner))
    version = registry.create_model_version(name, source="s3://mlflow/none/model")
    registry.set_registered_model_alias(name, "production", version.version)
    yield name
    registry.delete_registered_model(name)


def test_base_model_when_another_clients_then_refused_as_not_registered(
    foreign_model: str,
) -> None:
    settings = TrainerSettings()
    with pytest.raises(ValueError, match="is not registered"):
        load_base_model(settings, f"models:/{foreign_model}@production", "me")


def test_registration_when_name_is_another_owners_then_refused_and_nothing_added(
    foreign_model: str, stack_settings: ServiceSettings
) -> None:
    uri = stack_settings.mlflow.tracking_uri
    registry = MlflowClient(uri, uri)
    before = len(registry.search_model_versions(f"name='{foreign_model}'"))
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("it-ownership")
    with mlflow.start_run(), pytest.raises(ModelOwnershipError, match="belongs to someone else"):
        log_registered_model(
            torch.nn.Linear(1, 1), foreign_model, ["x"], "candidate", uri, owner="me"
        )
    assert len(registry.search_model_versions(f"name='{foreign_model}'")) == before
