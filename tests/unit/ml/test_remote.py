"""The remote backend's wire format and client: round trips through the real protobuf
messages, and :class:`RemoteNetwork` against an in-process gRPC server speaking the Open
Inference Protocol (KServe's generated service), scripted to fail as servers do."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
import torch
from kserve import InferInput, InferRequest, InferResponse
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.utils.numpy_codec import from_np_dtype

from vidpipe.events import ModelRef
from vidpipe_ml.inference import InferenceFailed
from vidpipe_ml.oip import (
    BadTensors,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    served_by,
)
from vidpipe_ml.remote import ModelServerUnavailable, RemoteInferenceError, RemoteNetwork

REF = ModelRef(name="coco-centernet", version="3")


def batch(size: int = 2) -> torch.Tensor:
    return torch.arange(size * 3 * 4 * 5, dtype=torch.float32).reshape(size, 3, 4, 5)


def core(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stand-in core: a float map and an integer tensor per image."""
    return pixels.sum(dim=1), pixels.flatten(1).argmax(dim=1, keepdim=True)


def test_request_when_through_protobuf_then_same_batch_model_and_version() -> None:
    pixels = batch()
    message = encode_request("coco-centernet", "production", pixels).to_grpc()
    request = InferRequest.from_grpc(pb.ModelInferRequest.FromString(message.SerializeToString()))
    assert (request.model_name, request.model_version) == ("coco-centernet", "production")
    assert torch.equal(decode_request(request), pixels)


def test_response_when_through_protobuf_then_same_outputs_dtypes_and_backend() -> None:
    pixels = batch()
    request = encode_request(REF.name, REF.version, pixels)
    sent = encode_response(request, REF, core(pixels), "openvino-bf16").to_grpc()
    response = InferResponse.from_grpc(pb.ModelInferResponse.FromString(sent.SerializeToString()))
    outputs = decode_response(response)
    expected = core(pixels)
    assert [o.dtype for o in outputs] == [torch.float32, torch.int64]
    assert all(torch.equal(a, b) for a, b in zip(outputs, expected, strict=True))
    assert response.model_version == "3"
    assert served_by(response) == "openvino-bf16"


@pytest.mark.parametrize(
    "tensor",
    [torch.zeros(2, 3, 4, 5, dtype=torch.float64), torch.zeros(2, 1, 4, 5), torch.zeros(3, 4, 5)],
    ids=["fp64", "one-channel", "no-batch-axis"],
)
def test_decode_request_when_tensor_not_fp32_bchw_then_bad_tensors(tensor: torch.Tensor) -> None:
    array = tensor.numpy()
    tensor_in = InferInput("images", list(array.shape), from_np_dtype(array.dtype))
    tensor_in.set_data_from_numpy(array)
    with pytest.raises(BadTensors):
        decode_request(InferRequest(model_name=REF.name, infer_inputs=[tensor_in]))


class ScriptedServer(pb_grpc.GRPCInferenceServiceServicer):
    """Answers with :func:`core`, after failing the first calls with ``failures`` codes."""

    def __init__(self) -> None:
        self.failures: list[grpc.StatusCode] = []
        self.requests: list[InferRequest] = []

    def ModelInfer(  # the generated service's method name
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        if self.failures:
            context.abort(self.failures.pop(0), "scripted failure")
        parsed = InferRequest.from_grpc(request)
        self.requests.append(parsed)
        pixels = decode_request(parsed)
        ref = ModelRef(name=parsed.model_name, version=parsed.model_version or "1")
        response: pb.ModelInferResponse = encode_response(
            parsed, ref, core(pixels), "torch-f32"
        ).to_grpc()
        return response


@pytest.fixture
def server() -> Iterator[tuple[ScriptedServer, str]]:
    servicer = ScriptedServer()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    yield servicer, f"127.0.0.1:{port}"
    grpc_server.stop(grace=None)


@pytest.fixture
def network(server: tuple[ScriptedServer, str]) -> Iterator[RemoteNetwork]:
    remote = RemoteNetwork(server[1], REF, timeout_s=5, retry_s=20)
    yield remote
    remote.close()


def test_remote_network_when_server_answers_then_core_outputs_and_version_sent(
    server: tuple[ScriptedServer, str], network: RemoteNetwork
) -> None:
    pixels = batch()
    outputs = network(pixels)
    assert all(torch.equal(a, b) for a, b in zip(outputs, core(pixels), strict=True))
    (request,) = server[0].requests
    assert (request.model_name, request.model_version) == ("coco-centernet", "3")
    assert network.server_backend == "torch-f32"


def test_remote_network_when_server_briefly_unavailable_then_retried_not_failed(
    server: tuple[ScriptedServer, str], network: RemoteNetwork
) -> None:
    server[0].failures = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED]
    outputs = network(batch())
    assert torch.equal(outputs[0], core(batch())[0])
    assert server[0].failures == [] and len(server[0].requests) == 1


def test_remote_network_when_server_refuses_then_inference_failed_at_once(
    server: tuple[ScriptedServer, str], network: RemoteNetwork
) -> None:
    server[0].failures = [grpc.StatusCode.NOT_FOUND]
    started = time.monotonic()
    with pytest.raises(RemoteInferenceError, match="NOT_FOUND") as raised:
        network(batch())
    assert isinstance(raised.value, InferenceFailed)  # the detector dead-letters these
    assert time.monotonic() - started < 2  # no retries


def test_remote_network_when_nobody_listens_then_unavailable_after_the_retry_budget() -> None:
    remote = RemoteNetwork("127.0.0.1:9", REF, timeout_s=1, retry_s=1.5)  # discard port
    started = time.monotonic()
    try:
        with pytest.raises(ModelServerUnavailable, match="UNAVAILABLE"):
            remote(batch())
    finally:
        remote.close()
    assert 1.5 <= time.monotonic() - started < 10


def test_remote_network_when_batch_over_message_budget_then_split_and_joined(
    server: tuple[ScriptedServer, str],
) -> None:
    pixels = batch(5)
    per_image = pixels[:1].numel() * 4
    remote = RemoteNetwork(server[1], REF, max_request_bytes=2 * per_image)
    try:
        outputs = remote(pixels)
    finally:
        remote.close()
    assert [len(r.inputs[0].as_numpy()) for r in server[0].requests] == [2, 2, 1]
    assert all(torch.equal(a, b) for a, b in zip(outputs, core(pixels), strict=True))
