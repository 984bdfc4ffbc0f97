"""Safe decoding: whitelist, EXIF orientation, pixel limit, clear errors for bad input."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image
from tests.conftest import jpeg_bytes, png_bytes

from blockimage.imaging import InvalidImageError, decode_image, encode_image, probe_image


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


@pytest.mark.parametrize("quality", [95, 75])
def test_jpeg_is_encoded_as_pillow_would_byte_for_byte(photo, quality):
    """The JPEG writer (OpenCV's, without Pillow's copies of the array) makes the very file
    Pillow makes at this quality with 4:4:4 chroma: registered files stay what they were."""
    noisy = np.random.default_rng(1).integers(0, 256, (301, 457, 3), dtype=np.uint8)
    for pixels in (photo, noisy, photo[::2, 1::3]):  # the last one not contiguous
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(
            out, "JPEG", quality=quality, subsampling=0
        )
        assert encode_image(pixels, "JPEG", quality=quality) == out.getvalue()


def test_a_jpeg_decoded_for_reduced_work_keeps_at_least_the_size_asked(photo):
    """``at_least``: a JPEG decoded scaled in the DCT domain, never below the long side asked
    for, its picture the same; other formats, and JPEGs already small, at full size."""
    big = np.asarray(Image.fromarray(photo).resize((2000, 1320), Image.Resampling.LANCZOS))
    data = jpeg_bytes(big, 95)
    full = decode_image(data).pixels
    reduced = decode_image(data, at_least=768).pixels
    assert reduced.shape == (660, 1000, 3)  # 1/2: 1/4 would be 500 px, below 768
    assert decode_image(data, at_least=400).pixels.shape == (330, 500, 3)
    small = np.asarray(Image.fromarray(full).resize((1000, 660), Image.Resampling.BOX))
    assert np.abs(reduced.astype(int) - small).mean() < 2.0
    assert decode_image(png_bytes(big), at_least=768).pixels.shape == big.shape
    assert decode_image(data, at_least=2000).pixels.shape == big.shape


def test_exif_orientation_is_applied(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    out = io.BytesIO()
    Image.fromarray(photo).save(out, "JPEG", exif=exif, quality=95)
    decoded = decode_image(out.getvalue())
    assert decoded.pixels.shape == (photo.shape[1], photo.shape[0], 3)
    # The direction, not only the shape: orientation 6 displays the stored pixels turned 90
    # degrees clockwise, np.rot90(photo, -1); the other way round differs far beyond JPEG noise.
    clockwise = np.rot90(photo, -1).astype(np.int16)
    assert np.abs(decoded.pixels.astype(np.int16) - clockwise).mean() < 3
    assert np.abs(decoded.pixels.astype(np.int16) - np.rot90(photo, 1)).mean() > 20


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


def _saved(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def test_a_small_file_declaring_far_too_many_pixels_is_refused_unread():
    # 9999 x 9999 black at 1 bit per pixel: 12 KB of PNG under the 100 MP limit, which would
    # decode to 300 MB of RGB and cost minutes of work.
    blank = _saved(Image.new("1", (9999, 9999)), "PNG", optimize=True)
    assert len(blank) < 20_000
    with pytest.raises(InvalidImageError, match=r"decompression bomb: 9999x9999 .* PNG image"):
        probe_image(blank)
    # A 300 x 300 JPEG whose frame header claims 9000 x 9000: libjpeg would pad it with grey.
    small = bytearray(jpeg_bytes(np.full((300, 300, 3), 90, np.uint8)))
    sof = small.index(b"\xff\xc0")
    small[sof + 5 : sof + 9] = struct.pack(">HH", 9000, 9000)
    with pytest.raises(InvalidImageError, match="pixels per byte; a JPEG image"):
        decode_image(bytes(small))


@pytest.mark.parametrize(
    "mode, fmt, options",
    [("RGB", "JPEG", {"progressive": True, "optimize": True}), ("L", "JPEG", {"optimize": True}),
     ("L", "PNG", {"optimize": True}), ("RGB", "TIFF", {"compression": "tiff_deflate"}),
     ("RGB", "WEBP", {"quality": 0})],
)  # fmt: skip
def test_flat_camera_size_images_pass_the_ratio_guard(mode, fmt, options):
    # The most compressible legitimate 12 MP pictures: one flat colour, 8-bit samples.
    data = _saved(Image.new(mode, (4000, 3000)), fmt, **options)
    assert probe_image(data) == (fmt, 4000, 3000)


def test_large_reductions_take_whole_boxes_first_and_stay_area_averages(photo):
    """work_image of a camera-size picture: boxes of k x k, then area resampling; within a
    grey level or two of OpenCV's exact area resampling, and its own size when small."""
    import cv2

    from blockimage.imaging import shrink_to, work_image

    small = photo
    big = cv2.resize(small, (4243, 2828), interpolation=cv2.INTER_CUBIC)
    for size in ((1024, 683), (512, 341), (300, 200)):
        exact = cv2.resize(big, size, interpolation=cv2.INTER_AREA).astype(float)
        ours = shrink_to(big, size)
        assert ours.shape == (size[1], size[0], 3)
        assert np.abs(ours - exact).mean() < 2.0
    assert work_image(big).shape[:2] == (512, 768)
    tiny = small[:300, :400]
    assert work_image(tiny, 1024) is tiny
