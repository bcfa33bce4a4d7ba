"""OpenVINO artifacts for a registered model version, stored only when they pass a parity gate.

:func:`optimize_version` exports the version's network (a :class:`~vidpipe_ml.backends.
Splittable` module) to OpenVINO IR, quantizes it to int8 with NNCF (post-training, calibrated
on frames the caller supplies: shipped media, never the evaluation frames), and compares each
precision with the PyTorch reference on a labelled dataset, fastest first: ``int8``, ``bf16``
(where the CPU supports it), ``f32``. A precision passes when

- its COCO mAP@[.5:.95] is within :data:`MAP_TOLERANCE` of PyTorch's, and
- at least :data:`MATCH_RATE` of PyTorch's boxes with score >= :data:`MATCH_SCORE` have a
  same-label box in its output with IoU >= :data:`MATCH_IOU`.

The IRs of the passing precisions are logged to an MLflow run (experiment
``model-optimizations``) and the model version is tagged (:data:`TAG_PREFIX`) with them, the
fastest passing precision, and every candidate's figures, so ``models:/NAME@ALIAS`` still
names one model and the detector keeps loading by reference only. When nothing passes,
nothing is stored, the reasons are tagged, and the detector runs the model in PyTorch.

``openvino`` and ``nncf`` are imported inside the functions that use them (heavy, optional).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import torch
import torchvision
from mlflow import MlflowClient

from vidpipe.datasets import Dataset
from vidpipe.events import Detection, ModelRef
from vidpipe_ml.backends import (
    IR_FILE,
    IR_FORMAT,
    IR_OF_PRECISION,
    TAG_ARTIFACTS,
    TAG_FORMAT,
    TAG_PASSED,
    TAG_PRECISION,
    TAG_REPORT,
    BackendChoice,
    OpenVinoNetwork,
    Precision,
    Splittable,
    cpu_supports_bf16,
)
from vidpipe_ml.coco import coco_metrics, detections_to_coco
from vidpipe_ml.evaluation import require_ground_truth
from vidpipe_ml.inference import LoadedModel, decode_frame, detect_batch

log = logging.getLogger(__name__)

MAP_TOLERANCE = 0.01
MATCH_RATE = 0.99
MATCH_SCORE = 0.3
MATCH_IOU = 0.9
EXPERIMENT = "model-optimizations"
CALIBRATION_FRAMES = 100


class NotConvertible(ValueError):
    """The model has no tensor-only network to export (it is not Splittable)."""


@dataclass(frozen=True)
class Candidate:
    """One precision's parity figures: mAP@[.5:.95] of it and of PyTorch on the dataset,
    the share of PyTorch's confident boxes it reproduces, and its images/s there."""

    precision: str
    passed: bool
    map: float
    map_torch: float
    match_rate: float
    images_per_s: float
    reason: str


@dataclass(frozen=True)
class Optimization:
    """What :func:`optimize_version` decided for one model version."""

    name: str
    version: str
    precision: str | None
    candidates: list[Candidate] = field(default_factory=list)
    artifacts: str | None = None
    torch_images_per_s: float = 0.0

    def summary(self) -> str:
        tried = "; ".join(
            f"{c.precision} {'passed' if c.passed else 'failed'} (mAP {c.map:.4f} vs "
            f"{c.map_torch:.4f}, match {c.match_rate:.1%}, {c.images_per_s:.1f} img/s)"
            for c in self.candidates
        )
        return f"{self.name}/{self.version}: stored {self.precision or 'nothing'}; {tried}"


def export_ir(module: Splittable, example: torch.Tensor, out_dir: Path) -> Path:
    """``module.core`` as an f32 OpenVINO IR with a dynamic batch; returns the ``.xml``.

    ``example``: one prepared input ``[1, 3, H, W]`` (shapes are taken from it).
    """
    import openvino as ov

    with torch.no_grad():  # the network takes in-place shortcuts under inference mode
        model = ov.convert_model(module.core, example_input=example, input=[-1, *example.shape[1:]])
    path = out_dir / "f32" / IR_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, path, compress_to_fp16=False)
    return path


def quantize_ir(f32_xml: Path, calibration: Sequence[torch.Tensor], out_dir: Path) -> Path:
    """Post-training int8 quantization (NNCF, mixed preset) of the f32 IR, calibrated on the
    prepared inputs ``calibration`` (each ``[1, 3, H, W]``); returns the int8 ``.xml``."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(f32_xml)
    dataset = nncf.Dataset([c.numpy() for c in calibration])
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: not our output
        quantized = nncf.quantize(
            model, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(calibration)
        )
    path = out_dir / "int8" / IR_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, path)
    return path


def _run(model: LoadedModel, dataset: Dataset) -> tuple[list[list[Detection]], float]:
    """Every image's detections (down to the model's own floor) and images/s."""
    frames = [decode_frame(dataset.image_bytes(image)) for image in dataset.images]
    device = torch.device("cpu")
    detect_batch(model, frames[:1], device)  # warm-up: first-call compilation
    started = time.perf_counter()
    found = [detect_batch(model, [frame], device)[0] for frame in frames]
    return found, len(frames) / (time.perf_counter() - started)


def _map(dataset: Dataset, found: list[list[Detection]]) -> float:
    category_ids = {str(c["name"]): int(c["id"]) for c in dataset.categories}
    results = [
        entry
        for image, dets in zip(dataset.images, found, strict=True)
        for entry in detections_to_coco(int(image["id"]), dets, category_ids)
    ]
    return coco_metrics(dataset.coco, results).map


def match_rate(reference: list[list[Detection]], candidate: list[list[Detection]]) -> float:
    """The share of ``reference`` boxes with score >= :data:`MATCH_SCORE` that have a
    same-label box in ``candidate`` (same image) with IoU >= :data:`MATCH_IOU`; 1.0 when the
    reference has no such box."""
    wanted = matched = 0
    for ref_dets, cand_dets in zip(reference, candidate, strict=True):
        confident = [d for d in ref_dets if d.score >= MATCH_SCORE]
        wanted += len(confident)
        if not confident or not cand_dets:
            continue
        ious = torchvision.ops.box_iou(
            torch.tensor([d.box for d in confident]), torch.tensor([d.box for d in cand_dets])
        )
        for i, ref in enumerate(confident):
            same = [j for j, c in enumerate(cand_dets) if c.label == ref.label]
            if same and float(ious[i, same].max()) >= MATCH_IOU:
                matched += 1
    return 1.0 if wanted == 0 else matched / wanted


def _candidate(
    precision: Precision,
    xml: Path,
    reference: LoadedModel,
    reference_found: list[list[Detection]],
    reference_map: float,
    dataset: Dataset,
) -> Candidate:
    network = OpenVinoNetwork(xml, precision)
    model = LoadedModel(
        reference.ref, reference.module, reference.labels, BackendChoice("openvino", precision),
        network,
    )  # fmt: skip
    found, speed = _run(model, dataset)
    candidate_map = _map(dataset, found)
    rate = match_rate(reference_found, found)
    problems = []
    if abs(candidate_map - reference_map) > MAP_TOLERANCE:
        problems.append(f"mAP differs by {candidate_map - reference_map:+.4f}")
    if rate < MATCH_RATE:
        problems.append(f"only {rate:.1%} of PyTorch's boxes matched")
    return Candidate(
        precision=precision,
        passed=not problems,
        map=round(candidate_map, 4),
        map_torch=round(reference_map, 4),
        match_rate=round(rate, 4),
        images_per_s=round(speed, 2),
        reason="; ".join(problems) or "within the parity gate",
    )


def optimize(
    reference: LoadedModel, dataset: Dataset, calibration: Sequence[torch.Tensor], out_dir: Path
) -> tuple[list[Candidate], float]:
    """Export, quantize and gate ``reference`` (PyTorch, CPU) into ``out_dir``; returns every
    candidate, fastest first, and PyTorch's images/s on the dataset.

    ``calibration``: uint8 RGB ``[3, H, W]`` frames (not the dataset's).

    Raises:
        NotConvertible: the module is not :class:`Splittable`.
        vidpipe.datasets.InvalidDataset: no ground truth to measure mAP against.
    """
    module = reference.module
    if not isinstance(module, Splittable):
        raise NotConvertible(
            f"{type(module).__name__} has no prepare/network/finish split to export"
        )
    require_ground_truth(dataset)
    module.eval()
    with torch.inference_mode():
        prepared = [
            module.prepare([frame.float().div(255.0)]).contiguous().clone()
            for frame in calibration[:CALIBRATION_FRAMES]
        ]
    f32_xml = export_ir(module, prepared[0], out_dir)
    int8_xml = quantize_ir(f32_xml, prepared, out_dir)
    reference_found, torch_speed = _run(reference, dataset)
    reference_map = _map(dataset, reference_found)
    precisions: list[tuple[Precision, Path]] = [("int8", int8_xml)]
    if cpu_supports_bf16():
        precisions.append(("bf16", f32_xml))
    precisions.append(("f32", f32_xml))
    candidates = [
        _candidate(p, xml, reference, reference_found, reference_map, dataset)
        for p, xml in precisions
    ]
    for c in candidates:
        log.info("parity %s: %s", c.precision, c.reason, extra=asdict(c))
    return candidates, torch_speed


def optimize_version(
    tracking_uri: str,
    name: str,
    version: str,
    dataset: Dataset,
    calibration: Sequence[torch.Tensor],
    module: torch.nn.Module | None = None,
) -> Optimization:
    """Optimize registered version ``name``/``version`` and record the outcome on it.

    ``module``: the version's model when the caller holds it already (else it is loaded).
    Never raises for a model that cannot be converted or fails the gate: that is recorded
    (tag :data:`TAG_REPORT`) and returned. Raises ``MlflowException`` when the registry or the
    artifact store fails, and what loading the version raises.
    """
    mlflow.set_tracking_uri(tracking_uri)
    if module is None:
        module = mlflow.pytorch.load_model(f"models:/{name}/{version}", map_location="cpu")
    labels: list[str] = list(getattr(module, "labels", []))
    reference = LoadedModel(ModelRef(name=name, version=version), module, tuple(labels))
    client = MlflowClient(tracking_uri, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="vidpipe-ir-") as tmp:
        try:
            candidates, torch_speed = optimize(reference, dataset, calibration, Path(tmp))
        except NotConvertible as exc:
            _tag(client, name, version, None, [], None, {"refused": str(exc)})
            log.warning("not optimized: %s", exc, extra={"model": f"{name}/{version}"})
            return Optimization(name, version, None)
        passed = [c for c in candidates if c.passed]
        artifacts = None
        if passed:
            artifacts = _log_artifacts(name, version, Path(tmp), passed, candidates, torch_speed)
        report = {
            "dataset": dataset.name,
            "torch_images_per_s": round(torch_speed, 2),
            "candidates": [asdict(c) for c in candidates],
        }
        best = passed[0].precision if passed else None
        _tag(client, name, version, best, [c.precision for c in passed], artifacts, report)
    result = Optimization(name, version, best, candidates, artifacts, torch_speed)
    log.info("optimization recorded: %s", result.summary())
    return result


def _log_artifacts(
    name: str,
    version: str,
    ir_dir: Path,
    passed: list[Candidate],
    candidates: list[Candidate],
    torch_speed: float,
) -> str:
    irs = {IR_OF_PRECISION[c.precision] for c in passed}
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"{name}/{version}") as run:
        mlflow.set_tags({"model_name": name, "model_version": version})
        for ir in sorted(irs):
            mlflow.log_artifacts(str(ir_dir / ir), artifact_path=f"openvino/{ir}")
        metrics = {"torch_images_per_s": torch_speed}
        for c in candidates:
            metrics |= {
                f"{c.precision}_map": c.map,
                f"{c.precision}_match_rate": c.match_rate,
                f"{c.precision}_images_per_s": c.images_per_s,
            }
        mlflow.log_metrics(metrics)
    return f"runs:/{run.info.run_id}/openvino"


def _tag(
    client: MlflowClient,
    name: str,
    version: str,
    precision: str | None,
    passed: list[str],
    artifacts: str | None,
    report: dict[str, Any],
) -> None:
    client.set_model_version_tag(name, version, TAG_PRECISION, precision or "")
    client.set_model_version_tag(name, version, TAG_PASSED, ",".join(passed))
    client.set_model_version_tag(name, version, TAG_ARTIFACTS, artifacts or "")
    client.set_model_version_tag(name, version, TAG_REPORT, json.dumps(report))
    client.set_model_version_tag(name, version, TAG_FORMAT, IR_FORMAT)


def optimized(tags: dict[str, str]) -> bool:
    """Whether the version was already through :func:`optimize_version` (as it is now)."""
    return tags.get(TAG_FORMAT) == IR_FORMAT
