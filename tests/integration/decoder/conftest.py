"""Real RTSP server (gst-rtsp-server) on loopback serving a short H.264 clip of vtest.avi."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.local.media import (
    SYSTEM_PYTHON,
    fetch_vtest,
    start_rtsp_server,
    stop_rtsp_server,
    transcode_h264,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
CLIP_FRAMES = 40  # 4 s at vtest's 10 fps


def _gst_rtsp_server_available() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0')"
    try:
        result = subprocess.run([str(SYSTEM_PYTHON), "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def rtsp_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 40 frames of vtest.avi as H.264 MP4 (vtest cached in var/assets)."""
    if not _gst_rtsp_server_available():
        pytest.skip("gst-rtsp-server bindings missing: run infra/local/install-media.sh")
    pytest.importorskip("av", reason="PyAV (renderer extra) encodes the H.264 clip")
    vtest = fetch_vtest(REPO_ROOT / "var" / "assets")
    return transcode_h264(
        vtest, tmp_path_factory.mktemp("rtsp") / "vtest-4s.mp4", max_frames=CLIP_FRAMES
    )


@dataclass
class RtspServer:
    """A running server; ``kill`` and ``start`` simulate a camera going away and coming back."""

    file: Path
    port: int
    log_path: Path
    mount: str = "/clip"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def start(self) -> None:
        self.proc = start_rtsp_server(self.file, self.port, self.mount, self.log_path)

    def kill(self) -> None:
        """SIGKILL: no TEARDOWN, no BYE, like a camera losing power."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_rtsp_server(self.proc)
            self.proc = None


@pytest.fixture
def rtsp_server(rtsp_clip: Path, tmp_path: Path) -> Iterator[RtspServer]:
    """A fresh server on a free loopback port, stopped after the test."""
    server = RtspServer(file=rtsp_clip, port=_free_port(), log_path=tmp_path / "rtsp-server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
