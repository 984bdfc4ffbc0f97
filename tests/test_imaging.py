"""Safe decoding: whitelist, EXIF orientation, pixel limit, clear errors for bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from tests.conftest import jpeg_bytes, png_bytes

from blockimage.imaging import InvalidImageError, decode_image, encode_image


@pytest.fixture(scope="module")
def photo(photos) -> np.ndarray:
    return np.asarray(Image.open(photos["coffee"]).convert("RGB"))


@pytest.mark.parametrize(
    "fmt, lossless", [("PNG", True), ("JPEG", False), ("WEBP", True), ("TIFF", True)]
)
def test_whitelisted_formats_decode_to_rgb_uint8(photo, fmt, lossless):
    decoded = decode_image(encode_image(photo, fmt))
    assert decoded.format == fmt and decoded.lossless is lossless
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == photo.shape
    if lossless:
        assert np.array_equal(decoded.pixels, photo)


def test_exif_orientation_is_applied(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    out = io.BytesIO()
    Image.fromarray(photo).save(out, "JPEG", exif=exif, quality=95)
    decoded = decode_image(out.getvalue())
    assert decoded.pixels.shape == (photo.shape[1], photo.shape[0], 3)


def test_greyscale_and_alpha_become_rgb(photo):
    grey = decode_image(png_bytes(photo[:, :, 0]))
    assert grey.pixels.shape == photo.shape
    assert np.array_equal(grey.pixels[:, :, 0], grey.pixels[:, :, 2])
    rgba = np.dstack([photo, np.zeros(photo.shape[:2], np.uint8)])
    assert (decode_image(png_bytes(rgba)).pixels == 255).all()  # transparent -> white


def test_truncated_image_is_rejected(photo):
    data = png_bytes(photo)
    with pytest.raises(InvalidImageError, match="corrupt or truncated PNG"):
        decode_image(data[: len(data) // 2])
    data = jpeg_bytes(photo)
    with pytest.raises(InvalidImageError, match="truncated"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"%PDF-1.7 not an image at all", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 10, "unreadable|not an image|truncated"),
    ],
)
def test_non_images_are_rejected(data, message):
    with pytest.raises(InvalidImageError, match=message):
        decode_image(data)


def test_formats_outside_the_whitelist_are_rejected(photo):
    out = io.BytesIO()
    Image.fromarray(photo).save(out, "GIF")
    with pytest.raises(InvalidImageError, match="unsupported image format GIF"):
        decode_image(out.getvalue())


def test_pixel_limit_is_checked_before_decoding():
    # A 20000 x 20000 PNG of zeros compresses to ~400 KB: a decompression bomb in miniature.
    bomb = io.BytesIO()
    Image.new("L", (20000, 20000)).save(bomb, "PNG")
    with pytest.raises(
        InvalidImageError, match="too large: 400,000,000 pixels, limit is 100,000,000"
    ):
        decode_image(bomb.getvalue(), max_pixels=100_000_000)
    with pytest.raises(InvalidImageError, match="limit is 1,000"):
        decode_image(png_bytes(np.zeros((40, 40, 3), np.uint8)), max_pixels=1000)
