"""The promotion gate: move ``production`` to the candidate only if it is at least as good.

Both versions are scored on the same labelled dataset
(:func:`services.accuracy.service.evaluate_accuracy`: COCO mAP@[.5:.95] via pycocotools);
every decision is recorded in ``model_promotions``. The detector re-resolves
aliases every 10 s, so a moved alias takes effect without restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from services.accuracy.service import evaluate_accuracy, record_owner_for
from vidpipe.db import create_engine
from vidpipe.reports import Decision, Promotion, insert_promotion
from vidpipe.settings import ServiceSettings

log = logging.getLogger(__name__)

#: ``(settings, dataset, "NAME/VERSION") -> mAP``; the evaluator by default, a fake in tests.
MapFn = Callable[[ServiceSettings, str, str], float]


def decide(candidate_map: float, production_map: float | None, force: bool = False) -> Decision:
    """``promoted`` when there is no production version or the candidate's mAP is >= it;
    ``forced`` when it is lower but ``force`` is set; ``refused`` otherwise."""
    if production_map is None or candidate_map >= production_map:
        return "promoted"
    return "forced" if force else "refused"


def measured_map(settings: ServiceSettings, dataset: str, model: str) -> float:
    """mAP@[.5:.95] of ``model`` (``NAME/VERSION``) on ``dataset``, recorded as an accuracy
    report (an MLflow run and an ``accuracy_reports`` row)."""
    return evaluate_accuracy(settings, dataset, model).map


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if "not found" in exc.message.lower() or exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def promote(
    settings: ServiceSettings,
    name: str,
    from_alias: str = "candidate",
    to_alias: str = "production",
    dataset: str = "vtest-persons",
    force: bool = False,
    requested_by: str | None = None,
    measure: MapFn = measured_map,
    client_id: str | None = None,
) -> Promotion:
    """Gate ``models:/NAME@FROM`` against ``models:/NAME@TO`` on ``dataset``; move ``TO`` to
    the candidate's version unless refused (see :func:`decide`), and record the decision,
    owned like its accuracy reports (:func:`services.accuracy.service.record_owner_for`;
    ``client_id``: the client asking, which may promote only its own or shared models).

    If both aliases already point to the same version it is recorded as ``promoted``
    without evaluating twice.

    Raises:
        LookupError: ``NAME@FROM`` does not exist; the dataset is another client's.
        vidpipe_ml.cache.ModelUnavailable: the model does not exist or is another client's.
        ValueError: the model and the dataset belong to different clients, or the model has
            no owner recorded.
        vidpipe.datasets.DatasetNotFound / InvalidDataset: bad dataset.
        vidpipe_ml.cache.ModelUnavailable: a version cannot be loaded.
    """
    owner = record_owner_for(settings, dataset, f"{name}@{from_alias}", client_id)
    uri = settings.mlflow.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    candidate = _alias_version(client, name, from_alias)
    if candidate is None:
        raise LookupError(f"models:/{name}@{from_alias} does not exist")
    production = _alias_version(client, name, to_alias)
    candidate_map = measure(settings, dataset, f"{name}/{candidate}")
    production_map: float | None = None
    if production is not None:
        same = production == candidate
        production_map = (
            candidate_map if same else measure(settings, dataset, f"{name}/{production}")
        )
    decision = decide(candidate_map, production_map, force)
    if decision != "refused":
        client.set_registered_model_alias(name, to_alias, candidate)
    engine = create_engine(settings.postgres, pool_size=1)
    try:
        with engine.begin() as conn:
            promotion = insert_promotion(
                conn,
                client_id=owner,
                model_name=name,
                candidate_version=candidate,
                production_version=production,
                dataset=dataset,
                candidate_map=candidate_map,
                production_map=production_map,
                decision=decision,
                requested_by=requested_by,
            )
    finally:
        engine.dispose()
    log.info(
        "promotion %s",
        decision,
        extra={
            "model": name,
            "candidate": candidate,
            "production": production,
            "candidate_map": round(candidate_map, 4),
            "production_map": None if production_map is None else round(production_map, 4),
            "dataset": dataset,
        },
    )
    return promotion
