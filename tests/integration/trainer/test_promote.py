"""The promotion gate on real registry versions, scored by the evaluator on the synthetic
dataset: the colour oracle (mAP 1.0) against a 2-step SSDlite (mAP near 0)."""

from __future__ import annotations

import json

import mlflow
import psycopg
import pytest
import torch
import torchvision
from mlflow import MlflowClient

from services.accuracy.promote import promote
from services.trainer.settings import TrainerSettings
from tests.integration.trainer.conftest import Scope, TrainedJob
from tests.integration.trainer.oracle import LABELS, ColourBoxDetector
from vidpipe.modelref import owner_tags

pytestmark = pytest.mark.integration


def _register_oracle(settings: TrainerSettings, name: str, owner: str) -> str:
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run(run_name="oracle"):
        info = mlflow.pytorch.log_model(
            ColourBoxDetector(),
            name="model",
            serialization_format="pickle",
            registered_model_name=name,
            pip_requirements=[
                f"torch=={torch.__version__}",
                f"torchvision=={torchvision.__version__}",
            ],
        )
    version = str(info.registered_model_version)
    client = MlflowClient(settings.mlflow.tracking_uri, settings.mlflow.tracking_uri)
    client.set_model_version_tag(name, version, "labels", json.dumps(LABELS))
    for key, value in owner_tags(owner).items():  # as the trainer's registration records it
        client.set_registered_model_tag(name, key, value)
    return version


def _row(settings: TrainerSettings, promotion_id: int) -> tuple[object, ...] | None:
    with psycopg.connect(settings.postgres.dsn.get_secret_value()) as conn:
        return conn.execute(
            "SELECT decision, candidate_version, production_version, requested_by"
            " FROM model_promotions WHERE id = %s",
            (promotion_id,),
        ).fetchone()


def test_promote_gate_refuses_lower_accepts_equal_and_records_forced(
    trained: TrainedJob, trainer_settings: TrainerSettings, scope: Scope
) -> None:
    uri = trainer_settings.mlflow.tracking_uri
    client = MlflowClient(uri, uri)
    name, weak = scope.model_name, trained.model.version
    oracle = _register_oracle(trainer_settings, name, scope.client_id)
    client.set_registered_model_alias(name, "production", oracle)
    client.set_registered_model_alias(name, "candidate", weak)

    refused = promote(trainer_settings, name, dataset=scope.dataset, requested_by="pytest")

    assert refused.decision == "refused" and not refused.moved
    assert refused.production_map == pytest.approx(1.0)
    assert refused.candidate_map is not None and refused.candidate_map < 1.0
    assert client.get_model_version_by_alias(name, "production").version == oracle
    assert _row(trainer_settings, refused.id) == ("refused", weak, oracle, "pytest")

    equal = _register_oracle(trainer_settings, name, scope.client_id)
    client.set_registered_model_alias(name, "candidate", equal)

    promoted = promote(trainer_settings, name, dataset=scope.dataset, requested_by="pytest")

    assert promoted.decision == "promoted"
    assert promoted.candidate_map == pytest.approx(promoted.production_map or -1.0)
    assert client.get_model_version_by_alias(name, "production").version == equal

    client.set_registered_model_alias(name, "candidate", weak)
    forced = promote(trainer_settings, name, dataset=scope.dataset, force=True)

    assert forced.decision == "forced"
    assert client.get_model_version_by_alias(name, "production").version == weak
    assert _row(trainer_settings, forced.id) == ("forced", weak, equal, None)


def test_promote_when_no_production_yet_promotes(
    trained: TrainedJob, trainer_settings: TrainerSettings, scope: Scope
) -> None:
    name = f"{scope.model_name}-first"
    uri = trainer_settings.mlflow.tracking_uri
    client = MlflowClient(uri, uri)
    version = _register_oracle(trainer_settings, name, scope.client_id)
    client.set_registered_model_alias(name, "candidate", version)
    try:
        result = promote(
            trainer_settings, name, dataset=scope.dataset, measure=lambda s, d, m: 0.25
        )

        assert result.decision == "promoted" and result.production_version is None
        assert client.get_model_version_by_alias(name, "production").version == version
    finally:
        client.delete_registered_model(name)
        with psycopg.connect(trainer_settings.postgres.dsn.get_secret_value()) as conn:
            conn.execute("DELETE FROM model_promotions WHERE model_name = %s", (name,))
