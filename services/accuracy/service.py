"""Model accuracy on a labelled dataset, recorded: ``evaluate_accuracy(settings, dataset, ref)``.

0. checks ownership: for a client, the model and the dataset must be shared or its own
   (another client's reads as absent); the record belongs to the client owning the model
   or the dataset, else it is shared (:func:`vidpipe.reports.record_owner`);
1. loads the dataset (:mod:`vidpipe.datasets`: COCO JSON + images in S3);
2. resolves and loads the model through the ML library's cache (``NAME@ALIAS`` or
   ``NAME/VERSION``, with or without ``models:/``) on the backend the detector would use
   (OpenVINO when the version has an IR that passed the parity gate);
3. scores it with :func:`vidpipe_ml.evaluation.evaluate_model` (COCO mAP@[.5:.95], @.5, @.75
   and per-class AP by pycocotools);
4. logs an MLflow run (experiment ``accuracy-reports``), tags the model version with its
   score, and inserts a row into Postgres ``accuracy_reports``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping

import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from vidpipe.datasets import DatasetNotFound, dataset_owner, dataset_usable_by, load_dataset
from vidpipe.db import create_engine
from vidpipe.modelref import parse_model_ref
from vidpipe.objectstore import ObjectStore
from vidpipe.reports import AccuracyRecord, insert_accuracy, record_owner
from vidpipe.settings import ServiceSettings
from vidpipe_ml.cache import ModelCache, ModelUnavailable
from vidpipe_ml.catalog import ModelCatalog, ModelNotFound
from vidpipe_ml.coco import SCORE_FLOOR, CocoMetrics
from vidpipe_ml.evaluation import evaluate_model, require_ground_truth

log = logging.getLogger(__name__)

EXPERIMENT = "accuracy-reports"


def record_owner_for(
    settings: ServiceSettings, dataset: str, model: str, client_id: str | None = None
) -> str:
    """Who owns a record of ``model`` on ``dataset`` (a client id or ``shared``), after
    checking that ``client_id`` (``None``: a platform administrator) may use both.

    Raises:
        ValueError: ``model`` is not a model reference; the model and the dataset belong to
            different clients, or the model has no owner recorded.
        vidpipe_ml.cache.ModelUnavailable: no such model, or another client's.
        vidpipe.datasets.DatasetNotFound: another client's dataset (as if absent).
    """
    selector = parse_model_ref(model)
    if client_id is not None and not dataset_usable_by(dataset, client_id):
        raise DatasetNotFound(dataset, [])
    catalog = ModelCatalog(settings.mlflow.tracking_uri)
    try:
        shared, owner = catalog.owner(selector.name, client_id)
    except ModelNotFound as exc:
        raise ModelUnavailable(f"{model}: {exc}") from exc
    return record_owner(shared, owner, dataset_owner(dataset))


def evaluate_accuracy(
    settings: ServiceSettings, dataset: str, model: str, client_id: str | None = None
) -> AccuracyRecord:
    """Evaluate a registered model on a stored dataset, record it, and return the result.

    Args:
        dataset: dataset name in bucket ``datasets`` (e.g. ``vtest-persons``).
        model: a model reference (``NAME@ALIAS``, ``NAME/VERSION``, ``models:/...``).
        client_id: the client asking (model and dataset must be shared or its own);
            ``None``: a platform administrator.
    Raises:
        ValueError: ``model`` is not a model reference, or ownership is mixed or unknown
            (see :func:`record_owner_for`).
        vidpipe.datasets.DatasetNotFound: no such dataset (lists the existing ones).
        vidpipe.datasets.InvalidDataset: malformed, or no images / no boxes.
        vidpipe_ml.cache.ModelUnavailable: the model cannot be resolved or loaded, or is
            another client's.
    """
    selector = parse_model_ref(model)
    owner = record_owner_for(settings, dataset, model, client_id)
    data = load_dataset(ObjectStore(settings.s3), dataset)
    require_ground_truth(data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cache = ModelCache(settings.mlflow.tracking_uri, device, max_models=1)
    loaded = cache.get(cache.resolve(selector))
    result = evaluate_model(loaded, data, device)
    metrics = result.metrics
    log.info(
        "accuracy evaluated",
        extra={
            "dataset": dataset,
            "model": f"{loaded.ref.name}/{loaded.ref.version}",
            "backend": str(loaded.backend),
            "images": result.images,
            "map": round(metrics.map, 4),
            "map_50": round(metrics.map_50, 4),
            "eval_s": round(result.eval_s, 2),
        },
    )
    run_id = log_mlflow_run(
        settings.mlflow.tracking_uri,
        dataset=dataset,
        model=model,
        ref=(loaded.ref.name, loaded.ref.version),
        backend=str(loaded.backend),
        metrics=metrics,
        timings={"inference_s": result.inference_s, "eval_s": result.eval_s},
        images=result.images,
    )
    record = AccuracyRecord(
        client_id=owner,
        dataset=dataset,
        model_name=loaded.ref.name,
        model_version=loaded.ref.version,
        map=metrics.map,
        map_50=metrics.map_50,
        map_75=metrics.map_75,
        per_class_ap=metrics.per_class_ap,
        images=result.images,
        mlflow_run_id=run_id,
    )
    engine = create_engine(settings.postgres, pool_size=1)
    try:
        with engine.begin() as conn:
            insert_accuracy(conn, record)
    finally:
        engine.dispose()
    return record


def log_mlflow_run(
    tracking_uri: str,
    *,
    dataset: str,
    model: str,
    ref: tuple[str, str],
    backend: str,
    metrics: CocoMetrics,
    timings: Mapping[str, float],
    images: int,
) -> str:
    """One finished run in experiment ``accuracy-reports``; returns its id.

    Metrics ``map``, ``map_50``, ``map_75``, ``ap_<class>`` (AP@[.5:.95]) and
    ``ap50_<class>``, plus timings in seconds; params ``dataset``, ``model`` (as asked) and
    ``backend`` (where it ran: the detector's choice for this version);
    tags ``model_name``/``model_version``. The model version gets tags
    ``accuracy.<dataset>.map`` / ``.map_50`` / ``.run_id`` so the registry shows its score.
    """
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    name, version = ref
    run = client.create_run(
        experiment_id,
        run_name=f"{dataset}:{name}/{version}",
        tags={"model_name": name, "model_version": version, "dataset": dataset},
    )
    run_id: str = run.info.run_id
    now = int(time.time() * 1000)
    values = {"map": metrics.map, "map_50": metrics.map_50, "map_75": metrics.map_75}
    values |= {f"ap_{_metric_key(c)}": ap for c, ap in metrics.per_class_ap.items()}
    values |= {f"ap50_{_metric_key(c)}": ap for c, ap in metrics.per_class_ap_50.items()}
    values |= dict(timings) | {"images": float(images)}
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in values.items()],
        params=[
            Param("dataset", dataset),
            Param("model", model),
            Param("model_uri", f"models:/{name}/{version}"),
            Param("backend", backend),
            Param("score_floor", str(SCORE_FLOOR)),
            Param("metric_source", "pycocotools COCOeval bbox, area all, maxDets 100"),
        ],
        tags=[RunTag("mlflow.note.content", f"COCO mAP of models:/{name}/{version} on {dataset}")],
    )
    client.set_terminated(run_id)
    prefix = f"accuracy.{dataset}"
    client.set_model_version_tag(name, version, f"{prefix}.map", f"{metrics.map:.4f}")
    client.set_model_version_tag(name, version, f"{prefix}.map_50", f"{metrics.map_50:.4f}")
    client.set_model_version_tag(name, version, f"{prefix}.run_id", run_id)
    return run_id


def _metric_key(label: str) -> str:
    return re.sub(r"[^\w.\-/]", "_", label)
