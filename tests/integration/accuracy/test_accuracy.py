"""Accuracy evaluation against the real stack: S3 datasets, the MLflow registry's
``coco-centernet@production``, the ``accuracy_reports`` table and an MLflow run.

A fresh synthetic dataset per module (two real photographs with measured boxes) is removed
afterwards with its report rows, runs and model version tags. The ``vtest-persons`` run is a
genuine evaluation of the production model and is kept (row, run and version tags).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest
from mlflow import MlflowClient
from skimage.data import astronaut

from infra.local.media import fetch_vtest
from services.accuracy.service import evaluate_accuracy, record_owner_for
from vidpipe.datasets import (
    VTEST_PERSONS,
    DatasetNotFound,
    ensure_vtest_persons,
    upload_dataset,
)
from vidpipe.modelref import owner_tags
from vidpipe.objectstore import ObjectStore
from vidpipe.reports import AccuracyRecord
from vidpipe.settings import ServiceSettings
from vidpipe.topics import DATASETS_BUCKET
from vidpipe_ml.cache import ModelUnavailable

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[3] / "var" / "assets"
MODEL = "coco-centernet@production"
# skimage.data.astronaut() (512x512): the astronaut spans x 20..360, y 15..512 px (measured by
# eye: hair top, left shoulder edge, right sleeve edge, bottom border; see
# tests/unit/models/test_centernet.py). The mirrored copy spans x 512-360..512-20.
ASTRONAUT_XYWH = [20.0, 15.0, 340.0, 497.0]
MIRRORED_XYWH = [152.0, 15.0, 340.0, 497.0]


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    assert ok
    return data.tobytes()


def _report_row(settings: ServiceSettings, run_id: str) -> tuple[object, ...] | None:
    with psycopg.connect(settings.postgres.dsn.get_secret_value()) as conn:
        return conn.execute(
            "SELECT dataset, model_name, model_version, map, map_50, map_75, per_class_ap, images"
            " FROM accuracy_reports WHERE mlflow_run_id = %s",
            (run_id,),
        ).fetchone()


@pytest.fixture(scope="module")
def store(stack: None, stack_settings: ServiceSettings) -> ObjectStore:
    return ObjectStore(stack_settings.s3)


@pytest.fixture(scope="module")
def astronauts(store: ObjectStore, stack_settings: ServiceSettings) -> Iterator[str]:
    """A fresh two-image person dataset; removed afterwards with everything it produced."""
    name = f"test-astronauts-{uuid.uuid4().hex[:8]}"
    image = astronaut()
    annotations = {
        "images": [
            {"id": 1, "file_name": "astronaut.jpg", "width": 512, "height": 512},
            {"id": 2, "file_name": "astronaut-mirrored.jpg", "width": 512, "height": 512},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": ASTRONAUT_XYWH, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": MIRRORED_XYWH, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    images = {"astronaut.jpg": _jpeg(image), "astronaut-mirrored.jpg": _jpeg(image[:, ::-1])}
    upload_dataset(store, name, annotations, images)
    yield name
    store.delete_prefix(DATASETS_BUCKET, f"{name}/")
    with psycopg.connect(stack_settings.postgres.dsn.get_secret_value()) as conn:
        run_ids = [
            r[0]
            for r in conn.execute(
                "DELETE FROM accuracy_reports WHERE dataset = %s RETURNING mlflow_run_id", (name,)
            ).fetchall()
        ]
    client = MlflowClient(stack_settings.mlflow.tracking_uri)
    for run_id in run_ids:
        run = client.get_run(run_id)
        client.delete_run(run_id)
        for key in ("map", "map_50", "run_id"):
            client.delete_model_version_tag(
                run.data.tags["model_name"],
                run.data.tags["model_version"],
                f"accuracy.{name}.{key}",
            )


def test_evaluate_accuracy_when_astronauts_then_row_and_run_recorded(
    astronauts: str, stack_settings: ServiceSettings
) -> None:
    # when the production detector is evaluated on the two astronaut photographs
    result = evaluate_accuracy(stack_settings, astronauts, MODEL)
    # then both astronauts are found (IoU >= .5) ahead of any false positive
    assert result.images == 2
    assert result.model_name == "coco-centernet"
    assert result.map_50 == pytest.approx(1.0, abs=1e-9)
    assert 0.0 < result.map <= result.map_50
    # and the report row and the MLflow run hold the same numbers
    assert result.mlflow_run_id is not None
    row = _report_row(stack_settings, result.mlflow_run_id)
    assert row == (
        astronauts,
        "coco-centernet",
        result.model_version,
        result.map,
        result.map_50,
        result.map_75,
        result.per_class_ap,
        2,
    )
    run = MlflowClient(stack_settings.mlflow.tracking_uri).get_run(result.mlflow_run_id)
    assert run.data.metrics["map"] == pytest.approx(result.map)
    assert run.data.metrics["map_50"] == pytest.approx(result.map_50)
    assert run.data.metrics["ap_person"] == pytest.approx(result.per_class_ap["person"])
    assert run.data.params["dataset"] == astronauts
    assert run.data.params["model"] == MODEL
    assert run.data.tags["model_version"] == result.model_version


def test_evaluate_accuracy_when_model_unknown_then_model_unavailable(
    astronauts: str, stack_settings: ServiceSettings
) -> None:
    with pytest.raises(ModelUnavailable, match="no-such-model"):
        evaluate_accuracy(stack_settings, astronauts, "no-such-model@production")


def test_evaluate_accuracy_when_dataset_unknown_then_not_found_lists_datasets(
    astronauts: str, stack_settings: ServiceSettings
) -> None:
    with pytest.raises(DatasetNotFound) as err:
        evaluate_accuracy(stack_settings, f"missing-{uuid.uuid4().hex[:8]}", MODEL)
    assert astronauts in err.value.available
    assert astronauts in str(err.value)


def test_evaluate_accuracy_on_vtest_persons(
    store: ObjectStore, stack_settings: ServiceSettings
) -> None:
    # given the hand-labelled vtest frames in S3 (extracted from vtest.avi if absent)
    ensure_vtest_persons(store, fetch_vtest(ASSETS))
    # when the production detector is evaluated on them
    result: AccuracyRecord = evaluate_accuracy(stack_settings, VTEST_PERSONS, MODEL)
    log.info(
        "vtest-persons: mAP@[.5:.95] %.4f  mAP@.5 %.4f  mAP@.75 %.4f  person AP %s",
        result.map,
        result.map_50,
        result.map_75,
        result.per_class_ap,
    )
    # then a COCO person detector on clear pedestrians lands in a sane band (measured
    # 2026-11-22: mAP 0.547, mAP@.5 0.938; mAP@.5 is person AP@.5 in this one-class set)
    assert result.images >= 30
    assert set(result.per_class_ap) == {"person"}
    assert result.map_50 > 0.3
    assert 0.2 < result.map < result.map_50
    assert _report_row(stack_settings, result.mlflow_run_id or "") is not None


def test_record_owner_when_models_and_datasets_are_owned_then_record_follows_the_owner(
    stack_settings: ServiceSettings,
) -> None:
    # given a model owned by client A (a registry entry), and the shared coco-centernet
    uri = stack_settings.mlflow.tracking_uri
    registry = MlflowClient(uri, uri)
    a, b = f"acc-a-{uuid.uuid4().hex[:6]}", f"acc-b-{uuid.uuid4().hex[:6]}"
    owned = f"{a}-ssdlite320_mobilenet_v3_large"
    registry.create_registered_model(owned, tags=owner_tags(a))
    try:
        # shared model on a shared dataset: shared; on A's dataset: A's
        assert record_owner_for(stack_settings, VTEST_PERSONS, MODEL) == "shared"
        assert record_owner_for(stack_settings, f"{a}/set", MODEL) == a
        assert record_owner_for(stack_settings, f"{a}/set", MODEL, client_id=a) == a
        # A's model: A's record, also on a shared dataset
        assert record_owner_for(stack_settings, VTEST_PERSONS, f"{owned}@production") == a
        # B may use neither A's model nor A's dataset: both read as absent
        with pytest.raises(ModelUnavailable, match="not registered"):
            record_owner_for(stack_settings, VTEST_PERSONS, f"{owned}@production", client_id=b)
        with pytest.raises(DatasetNotFound):
            record_owner_for(stack_settings, f"{a}/set", MODEL, client_id=b)
        # A's model on B's dataset: mixed owners are refused
        with pytest.raises(ValueError, match="different clients"):
            record_owner_for(stack_settings, f"{b}/set", f"{owned}@production")
    finally:
        registry.delete_registered_model(owned)
