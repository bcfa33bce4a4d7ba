"""Browser-playable MP4 clips: H.264 (libx264, yuv420p, High profile) with the moov atom
up front (``+faststart``), which is what Chromium's <video> needs to start playing."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def encode_clip(jpeg_frames: Sequence[bytes], fps: float) -> bytes:
    """JPEG frames (in order, same size) -> MP4 bytes at ``fps`` frames per second.

    Raises:
        ValueError: no frames, or a frame that does not decode.
    """
    if not jpeg_frames:
        raise ValueError("a clip needs at least one frame")
    # +faststart rewrites the file in a second pass, so the muxer needs a real file.
    with tempfile.TemporaryDirectory(prefix="vidpipe-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        _write_mp4(path, jpeg_frames, fps)
        return path.read_bytes()


def _write_mp4(path: Path, jpeg_frames: Sequence[bytes], fps: float) -> None:
    with av.open(
        str(path), mode="w", format="mp4", options={"movflags": "+faststart"}
    ) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "profile": "high"}
        first = _decode(jpeg_frames[0])
        # yuv420p needs even dimensions
        stream.height, stream.width = (d - d % 2 for d in first.shape[:2])
        for data in jpeg_frames:
            image = _decode(data)[: stream.height, : stream.width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("frame does not decode as an image")
    return image
