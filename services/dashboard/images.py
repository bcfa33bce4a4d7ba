"""Images people send for on-demand detection: limits, content sniffing, normalisation.

The declared content type is never trusted: the format comes from the bytes (Pillow reads
the header), and only JPEG, PNG and WebP are accepted. The pixel limit is checked on the
header's dimensions *before* the image is decoded (a small file can declare a huge image),
then the whole image is decoded once to prove it is readable. What is stored is JPEG: a
JPEG as sent, anything else re-encoded (quality 92), with its EXIF orientation ignored as
the detector ignores it.

A URL image is fetched only where the camera URL policy (:mod:`vidpipe.urlpolicy`) allows
the tenant to connect: http(s), every address of the host checked, the connection pinned to
the checked address (TLS still verifies the host name), no redirects, the size capped while
reading.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
from PIL import Image, UnidentifiedImageError

from vidpipe.urlpolicy import UrlPolicy, UrlRefused, connect_url

log = logging.getLogger(__name__)

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_JPEG_QUALITY = 92


class ImageRejected(ValueError):
    """The image is refused; ``status`` 413 (too many bytes) or 422 (anything else), the
    message says why in words a caller can act on."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """``max_bytes`` of the file, ``max_pixels`` = width x height."""

    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class CheckedImage:
    """An accepted image: ``jpeg`` bytes to store, the sniffed ``format`` (``JPEG``,
    ``PNG``, ``WEBP``), its size in pixels and the bytes received."""

    jpeg: bytes
    format: str
    width: int
    height: int
    received_bytes: int


def check_image(data: bytes, limits: Limits) -> CheckedImage:
    """Sniff, limit, decode and normalise ``data`` (see the module doc).

    Raises:
        ImageRejected: empty or over ``max_bytes`` (413), not an image or a format other
            than JPEG/PNG/WebP, over ``max_pixels``, or undecodable (422).
    """
    if not data:
        raise ImageRejected("the image is empty")
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"the image has more than {limits.max_bytes} bytes", status=413)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))  # reads the header only
            fmt, (width, height) = probe.format or "", probe.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise ImageRejected(f"not a readable image: {_short(exc)}") from exc
    if fmt not in FORMATS:
        raise ImageRejected(f"{fmt or 'unknown'} images are not accepted; send JPEG, PNG or WebP")
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"the image has {width}x{height} = {width * height} pixels; the limit is "
            f"{limits.max_pixels}"
        )
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None or decoded.shape[1] != width or decoded.shape[0] != height:
        raise ImageRejected(f"the {fmt} image could not be decoded (truncated or corrupt)")
    if fmt == "JPEG":
        jpeg = data
    else:
        ok, buf = cv2.imencode(".jpg", decoded, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            raise ImageRejected("the image could not be converted to JPEG")
        jpeg = buf.tobytes()
    return CheckedImage(jpeg, fmt, width, height, len(data))


def _short(exc: Exception) -> str:
    return str(exc).split("\n")[0][:200] or type(exc).__name__


class ImageUnreachable(ValueError):
    """The URL could not be fetched (refused by policy, unreachable, not 200)."""


def fetch_image(url: str, policy: UrlPolicy, max_bytes: int, timeout_s: float = 10.0) -> bytes:
    """The bytes at an ``http(s)`` ``url`` the policy allows (see the module doc).

    Raises:
        ImageUnreachable: another scheme, refused by the policy, a host that does not
            resolve, a connection error or timeout, a status other than 200.
        ImageRejected: more than ``max_bytes`` (413).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageUnreachable("image_url must be an http:// or https:// URL with a host")
    try:
        pinned = connect_url(url, policy)
    except UrlRefused as exc:
        raise ImageUnreachable(str(exc).replace("url:", "image_url:", 1)) from exc
    except OSError as exc:
        raise ImageUnreachable(f"image_url host {parts.hostname!r} does not resolve") from exc
    headers = {"Host": parts.netloc.rpartition("@")[2], "Accept": ", ".join(FORMATS.values())}
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=False) as http,
            http.stream("GET", pinned, headers=headers, extensions=extensions) as response,
        ):
            if response.status_code != 200:
                raise ImageUnreachable(f"image_url answered HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise ImageRejected(
                        f"the image at image_url has more than {max_bytes} bytes", status=413
                    )
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ImageUnreachable(f"image_url could not be fetched: {type(exc).__name__}") from exc
    return b"".join(chunks)
