"""Registering the CenterNet detector into a real (sqlite-backed) MLflow registry and loading
it back by alias, as the detector does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from skimage.data import astronaut

from vidpipe_ml.registry import DEFAULT_EXPERIMENT, ensure_centernet, import_centernet

WEIGHTS_DIR = Path(__file__).resolve().parents[3] / "var" / "assets" / "centernet"

pytestmark = pytest.mark.integration


@pytest.fixture
def tracking_uri(tmp_path: Path) -> Iterator[str]:
    """A fresh sqlite registry whose artifacts go to a file store under ``tmp_path``."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).create_experiment(
        DEFAULT_EXPERIMENT, artifact_location=(tmp_path / "artifacts").as_uri()
    )
    previous = mlflow.get_tracking_uri()
    yield uri
    mlflow.set_tracking_uri(previous)


def test_import_centernet_when_loaded_by_alias_then_detects_astronaut(tracking_uri: str) -> None:
    # given the detector imported into an empty registry
    version = import_centernet(tracking_uri, weights_dir=WEIGHTS_DIR)
    # when a fresh consumer loads it by alias, as the detector service does
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pytorch.load_model("models:/coco-centernet@production").eval()
    image = torch.from_numpy(astronaut()).permute(2, 0, 1).float() / 255.0
    with torch.inference_mode():
        found = model([image])[0]
    # then it follows the detection contract and finds the astronaut
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    tagged = client.get_model_version("coco-centernet", version).tags
    assert version == "1"
    assert json.loads(tagged["labels"]) == model.labels
    assert model.labels[int(found["labels"][0])] == "person"
    assert float(found["scores"][0]) >= 0.5
    assert found["boxes"].shape == (len(found["scores"]), 4)


def test_ensure_centernet_when_alias_exists_then_no_new_version(tracking_uri: str) -> None:
    # given a first import
    first = ensure_centernet(tracking_uri, "coco-centernet", "production", WEIGHTS_DIR)
    # when ensured again
    second = ensure_centernet(tracking_uri, "coco-centernet", "production", WEIGHTS_DIR)
    # then the existing version is returned and nothing new is registered
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    assert first == second == "1"
    assert len(client.search_model_versions("name='coco-centernet'")) == 1


def test_ensure_centernet_when_artifacts_lost_then_imports_again(
    tracking_uri: str, tmp_path: Path
) -> None:
    # given a registered version whose artifact store was wiped (registry outlived it)
    import shutil

    first = ensure_centernet(tracking_uri, "coco-centernet", "production", WEIGHTS_DIR)
    shutil.rmtree(tmp_path / "artifacts")
    # when ensured again
    second = ensure_centernet(tracking_uri, "coco-centernet", "production", WEIGHTS_DIR)
    # then a loadable new version holds the alias
    assert (first, second) == ("1", "2")
    mlflow.set_tracking_uri(tracking_uri)
    assert mlflow.pytorch.load_model("models:/coco-centernet@production").labels[0] == "person"
