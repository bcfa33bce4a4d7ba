"""The Open Inference Protocol (KServe v2) wire format of a model's core, shared by the
detector's ``remote`` backend (:mod:`vidpipe_ml.remote`) and ``vidpipe run model-server``, so
the two cannot disagree on it.

A request carries one input, :data:`INPUT` (the ``prepare`` output of a
:class:`~vidpipe_ml.backends.Splittable` model: FP32 ``[B, 3, H, W]``), the model's registry
name as ``model_name`` and its version (``"7"``) or alias (``"production"``) as
``model_version``; the server resolves an alias itself. The response carries the ``core``
outputs in order as ``output_0``, ``output_1``, ... (their dtypes and shapes as the core
returns them), the concrete version that ran as ``model_version`` and, in its parameters,
:data:`PARAM_BACKEND`: the server's backend (``torch-f32``, ``openvino-bf16``, ...).

``kserve`` is imported at the top: only the remote backend and the model server import
this module (it cannot share a process with ``tritonclient``, which registers the same
protobuf symbols).
"""

from __future__ import annotations

import uuid

import numpy as np
import torch
from kserve import InferInput, InferOutput, InferRequest, InferResponse
from kserve.protocol.infer_type import to_http_parameters
from kserve.utils.numpy_codec import from_np_dtype

from vidpipe.events import ModelRef

INPUT = "images"
OUTPUT_PREFIX = "output_"
PARAM_BACKEND = "vidpipe_backend"


class BadTensors(ValueError):
    """A request or response does not have the tensors this format expects."""


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().contiguous().numpy()


def _tensor(array: np.ndarray) -> torch.Tensor:
    # np.frombuffer views are read-only; torch wants to own writable memory
    return torch.from_numpy(np.array(array, copy=True))


def encode_request(model: str, version: str, batch: torch.Tensor) -> InferRequest:
    """``batch`` (FP32 ``[B, 3, H, W]``) for ``model`` at ``version`` (number or alias)."""
    pixels = _numpy(batch.float())
    tensor = InferInput(INPUT, list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=True)
    return InferRequest(
        model_name=model,
        infer_inputs=[tensor],
        request_id=uuid.uuid4().hex,
        model_version=version,
    )


def decode_request(request: InferRequest) -> torch.Tensor:
    """The FP32 ``[B, 3, H, W]`` batch of a request. Raises :class:`BadTensors`."""
    inputs = {tensor.name: tensor for tensor in request.inputs}
    if set(inputs) != {INPUT} or inputs[INPUT].datatype != "FP32":
        found = {name: tensor.datatype for name, tensor in inputs.items()}
        raise BadTensors(f"expected one FP32 input {INPUT!r}, got {found}")
    batch = _tensor(inputs[INPUT].as_numpy())
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise BadTensors(f"expected {INPUT} of shape [B, 3, H, W], got {list(batch.shape)}")
    return batch


def encode_response(
    request: InferRequest, ref: ModelRef, outputs: tuple[torch.Tensor, ...], backend: str
) -> InferResponse:
    """The core's ``outputs`` for ``request``, computed by ``ref`` on ``backend``."""
    tensors = []
    for i, output in enumerate(outputs):
        array = _numpy(output)
        tensor = InferOutput(f"{OUTPUT_PREFIX}{i}", list(array.shape), _datatype(array))
        tensor.set_data_from_numpy(array, binary_data=True)
        tensors.append(tensor)
    return InferResponse(
        response_id=request.id or uuid.uuid4().hex,
        model_name=ref.name,
        model_version=ref.version,
        infer_outputs=tensors,
        parameters={PARAM_BACKEND: backend},
        use_binary_outputs=True,
    )


def decode_response(response: InferResponse) -> tuple[torch.Tensor, ...]:
    """The core's outputs, in order. Raises :class:`BadTensors`."""
    by_name = {tensor.name: tensor for tensor in response.outputs}
    names = [f"{OUTPUT_PREFIX}{i}" for i in range(len(by_name))]
    if sorted(by_name) != sorted(names):
        raise BadTensors(f"expected outputs {names}, got {sorted(by_name)}")
    return tuple(_tensor(by_name[name].as_numpy()) for name in names)


def served_by(response: InferResponse) -> str | None:
    """The backend the server says it ran (:data:`PARAM_BACKEND`), if it says."""
    value = to_http_parameters(response.parameters or {}).get(PARAM_BACKEND)
    return None if value is None else str(value)


def _datatype(array: np.ndarray) -> str:
    datatype = from_np_dtype(array.dtype)
    if datatype is None:
        raise BadTensors(f"no Open Inference Protocol datatype for {array.dtype}")
    return str(datatype)
