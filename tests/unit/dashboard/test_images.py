"""Request images: sniffed (not trusted), limited before decoding, normalised to JPEG."""

from __future__ import annotations

import zlib

import cv2
import numpy as np
import pytest

from services.dashboard.images import ImageRejected, Limits, check_image

LIMITS = Limits(max_bytes=1_000_000, max_pixels=1_000_000)


def encoded(ext: str, width: int = 64, height: int = 48) -> bytes:
    image = np.random.default_rng(1).integers(0, 255, (height, width, 3), np.uint8)
    return cv2.imencode(ext, image)[1].tobytes()


def test_check_image_when_jpeg_then_kept_as_sent() -> None:
    data = encoded(".jpg")
    checked = check_image(data, LIMITS)
    assert (checked.format, checked.width, checked.height) == ("JPEG", 64, 48)
    assert checked.jpeg is data


@pytest.mark.parametrize("ext", [".png", ".webp"])
def test_check_image_when_png_or_webp_then_reencoded_as_jpeg(ext: str) -> None:
    checked = check_image(encoded(ext), LIMITS)
    assert checked.jpeg[:3] == b"\xff\xd8\xff"
    decoded = cv2.imdecode(np.frombuffer(checked.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (48, 64, 3)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"hello, not an image at all", "not a readable image"),
        (encoded(".bmp"), "BMP images are not accepted"),
        (encoded(".jpg")[:1000], "could not be decoded"),
    ],
)
def test_check_image_when_not_an_accepted_image_then_422(data: bytes, words: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        check_image(data, LIMITS)
    assert caught.value.status == 422 and words in str(caught.value)


def test_check_image_when_too_many_bytes_then_413() -> None:
    with pytest.raises(ImageRejected) as caught:
        check_image(encoded(".png"), Limits(max_bytes=100, max_pixels=10**6))
    assert caught.value.status == 413


def test_check_image_when_header_declares_too_many_pixels_then_refused_before_decoding() -> None:
    # a 1x1 PNG whose header claims 12000 x 12000 pixels (CRC fixed): 70 bytes
    png = encoded(".png", 1, 1)
    ihdr = b"IHDR" + (12_000).to_bytes(4, "big") * 2 + png[24:29]
    bomb = png[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + png[33:]
    with pytest.raises(ImageRejected) as caught:
        check_image(bomb, LIMITS)
    assert "12000x12000" in str(caught.value)
