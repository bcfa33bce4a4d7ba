"""Where a model's network runs: PyTorch (the reference; CUDA when present), OpenVINO (CPU),
or a model server over the Open Inference Protocol (``remote``, :mod:`vidpipe_ml.remote`).

Models that split into ``prepare`` -> ``core`` -> ``finish`` (:class:`Splittable`, e.g.
:class:`vidpipe_ml.centernet.CenterNet`) can run ``core`` on either backend; ``prepare``
and ``finish`` always run in PyTorch in the caller's process, so the backends share pre- and
post-processing and cannot disagree on it. Other models run whole in PyTorch.

OpenVINO networks come from IR artifacts stored with the model version
(:mod:`vidpipe_ml.optimize`): ``f32`` (the exported network, also run at ``bf16`` through
OpenVINO's inference-precision hint where the CPU supports it) and ``int8`` (quantized with
NNCF). ``openvino`` is imported inside the functions that need it: a heavy optional
dependency.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import mlflow
import numpy as np
import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

BackendName = Literal["torch", "openvino", "remote"]
Precision = Literal["f32", "bf16", "int8"]
BACKEND_CHOICES = ("auto", "torch", "openvino")
PRECISION_CHOICES = ("auto", "f32", "bf16", "int8")
#: The IR artifact each OpenVINO precision compiles (bf16 is f32's IR at a lower hint).
IR_OF_PRECISION: dict[str, str] = {"f32": "f32", "bf16": "f32", "int8": "int8"}
IR_FILE = "model.xml"
#: Tags on a model version, written by :mod:`vidpipe_ml.optimize`.
TAG_PREFIX = "vidpipe.openvino"
TAG_PRECISION = f"{TAG_PREFIX}.precision"  # the fastest passing precision ("" when none)
TAG_PASSED = f"{TAG_PREFIX}.passed"  # comma-separated passing precisions
TAG_ARTIFACTS = f"{TAG_PREFIX}.artifacts"  # runs:/<run>/openvino, holding f32/ and int8/
TAG_REPORT = f"{TAG_PREFIX}.report"  # JSON: every candidate's figures, or why none was tried
TAG_FORMAT = f"{TAG_PREFIX}.format"  # what the IRs compute (IR_FORMAT when current)
#: The split the stored IRs were exported at: a version tagged otherwise is optimized again
#: (``CenterNet.core`` since it includes peak finding).
IR_FORMAT = "core/2"


@runtime_checkable
class Splittable(Protocol):
    """A detection model whose tensor-only core can run on another backend.

    ``prepare(images)`` -> float32 ``[B, 3, H, W]``; ``core(batch)`` -> tuple of tensors;
    ``finish(outputs, images)`` -> per image ``{"boxes", "scores", "labels"}``.
    """

    @property
    def core(self) -> nn.Module: ...

    def prepare(self, images: list[Tensor]) -> Tensor: ...

    def finish(
        self, outputs: tuple[Tensor, ...], images: list[Tensor]
    ) -> list[dict[str, Tensor]]: ...


@dataclass(frozen=True)
class BackendChoice:
    """What runs a model: ``name`` and ``precision`` (for torch: the module's dtype)."""

    name: BackendName
    precision: Precision = "f32"

    def __str__(self) -> str:
        return f"{self.name}-{self.precision}"


#: PyTorch at full precision: the reference every other choice is gated against.
TORCH = BackendChoice("torch", "f32")
#: The core on a model server (:mod:`vidpipe_ml.remote`); ``f32`` is the tensor type on the
#: wire, the server's own backend is its choice (it reports it per response).
REMOTE = BackendChoice("remote", "f32")


class OpenVinoNetwork:
    """A compiled OpenVINO network: float32 ``[B, 3, H, W]`` tensor -> tuple of float32
    tensors ``[B, ...]`` in the network's output order.

    Compiled for the CPU with the latency hint, the inference-precision hint of
    ``precision``, and a static batch of 1 (measured here: ~25% faster than a dynamic batch,
    and batch 4 was no faster per image than batch 1), so a batch runs image by image.
    Calls from several threads are safe (one infer request per call).
    """

    def __init__(self, xml_path: Path, precision: Precision) -> None:
        import openvino as ov  # heavy optional dependency (see the module doc)

        core = ov.Core()
        model = core.read_model(xml_path)
        shape = model.inputs[0].get_partial_shape()
        model.reshape([1, *(d.get_length() for d in list(shape)[1:])])
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if precision in ("f32", "bf16"):
            config["INFERENCE_PRECISION_HINT"] = precision
        self._compiled = core.compile_model(model, "CPU", config)
        self._outputs = list(self._compiled.outputs)
        self.precision = precision

    def __call__(self, batch: Tensor) -> tuple[Tensor, ...]:
        request = self._compiled.create_infer_request()
        outputs: list[list[np.ndarray]] = [[] for _ in self._outputs]
        pixels = batch.detach().float().cpu().contiguous().numpy()
        for image in pixels:
            results = request.infer([image[None]])
            for i, port in enumerate(self._outputs):
                outputs[i].append(np.array(results[port]))
        return tuple(torch.from_numpy(np.concatenate(out)) for out in outputs)


@dataclass(frozen=True)
class StoredIR:
    """What a version's tags say about its OpenVINO artifacts."""

    precision: str | None
    passed: tuple[str, ...]
    artifacts: str | None

    @classmethod
    def of(cls, tags: dict[str, str]) -> StoredIR:
        """What ``tags`` record; IRs of another :data:`IR_FORMAT` count as none."""
        if tags.get(TAG_FORMAT) != IR_FORMAT:
            return cls(precision=None, passed=(), artifacts=None)
        return cls(
            precision=tags.get(TAG_PRECISION) or None,
            passed=tuple(p for p in tags.get(TAG_PASSED, "").split(",") if p),
            artifacts=tags.get(TAG_ARTIFACTS) or None,
        )

    def download(self, dest: Path) -> dict[str, Path]:
        """Fetch the IRs into ``dest``; returns precision -> ``.xml`` for every passing one."""
        if self.artifacts is None:
            return {}
        local = Path(mlflow.artifacts.download_artifacts(self.artifacts, dst_path=str(dest)))
        return {p: local / IR_OF_PRECISION[p] / IR_FILE for p in self.passed}


def cpu_supports_bf16() -> bool:
    """Whether OpenVINO's CPU plugin lists BF16 among its optimization capabilities."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def choose_backend(
    requested: str,
    precision: str,
    device: torch.device,
    module: nn.Module,
    passed: Mapping[str, Path],
    recommended: str | None,
) -> BackendChoice:
    """The backend (and precision) a model version runs on.

    Args:
        requested: ``auto``, ``torch`` or ``openvino``. ``auto``: CUDA torch when ``device``
            is a GPU, else OpenVINO when the version has an IR artifact, else torch.
        precision: ``auto`` (the fastest that passed the parity gate: ``recommended``) or a
            precision that passed it.
        passed: precision -> the local ``.xml`` of its IR, for every precision that passed
            the parity gate (``bf16`` compiles the ``f32`` IR).
        recommended: the version's fastest passing precision, if any.
    Raises:
        ValueError: an unknown choice, ``openvino`` asked for on a GPU device, or for a model
            without an IR artifact / without one of the asked precision.
    """
    if requested not in BACKEND_CHOICES or precision not in PRECISION_CHOICES:
        raise ValueError(
            f"backend {requested!r} / precision {precision!r}: use {BACKEND_CHOICES} and "
            f"{PRECISION_CHOICES}"
        )
    convertible = isinstance(module, Splittable) and bool(passed) and recommended is not None
    if requested == "torch" or (requested == "auto" and (device.type == "cuda" or not convertible)):
        return BackendChoice("torch", "f32")
    if device.type == "cuda":
        raise ValueError("the openvino backend runs on the CPU; set VIDPIPE_DEVICE=cpu")
    if not convertible:
        raise ValueError(
            "this model version has no OpenVINO artifact (run `vidpipe models optimize`); "
            "use VIDPIPE_BACKEND=torch or auto"
        )
    chosen = recommended if precision == "auto" else precision
    if chosen is None or chosen not in passed:
        listed = ", ".join(sorted(passed)) or "none"
        raise ValueError(f"precision {chosen} did not pass the parity gate (passed: {listed})")
    return BackendChoice("openvino", chosen)  # type: ignore[arg-type]
