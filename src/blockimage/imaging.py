"""Safe decoding of untrusted image bytes into RGB uint8 arrays, encoding back to bytes, and
the working resolution.

Decoding follows a whitelist of formats (JPEG, PNG, WebP, TIFF), refuses images whose pixel
count exceeds a limit or is out of all proportion to the file's size *before* decompressing
them (decompression-bomb guards), applies the EXIF orientation, and converts to RGB;
transparency is composited onto white, for decoded files and arrays alike
(:func:`rgb_from_array`). Anything else raises :class:`InvalidImageError` with a
message a user can act on. No disk or network I/O: bytes in, arrays out (reading a path is
:func:`blockimage.inputs.load_image`).

:func:`work_image` is the one definition of the working resolution (long side at most
:data:`WORK_SIDE` pixels) at which the comparison, the keypoint signatures and the forensic
features look at an image.
"""

from __future__ import annotations

import io
import os
import re
import struct
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from math import ceil

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidInputError

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_FILE_BYTES",
    "MAX_PIXELS_PER_BYTE",
    "WORK_SIDE",
    "DecodedImage",
    "InvalidImageError",
    "JpegLuma",
    "UnsupportedImageError",
    "ImageTooLargeError",
    "decode_image",
    "encode_image",
    "is_lossless",
    "jpeg_luma",
    "media_type_of",
    "probe_image",
    "rgb_from_array",
    "same_image_data",
    "shrink_to",
    "work_size",
    "work_image",
]

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF")
_ORIENTATION = 0x0112  # the EXIF tag
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
# The long side, in pixels, at which comparison, keypoints and forensic features work: large
# enough for 0.1 %-of-the-frame edits (~470 px) to be seen, small enough for ~50 ms per step.
WORK_SIDE = 768
# The second bomb guard: pixels declared per byte of file, above which a large image is refused
# unread. JPEG codes every 8 x 8 block of every component in at least a few bits (a flat grey
# 12 MP photo, progressive and optimised: 255 pixels per byte), so a small file that declares
# many more pixels is truncated or crafted (libjpeg would pad it with grey). Deflate (PNG,
# TIFF) stops near 1,030:1, so 8-bit samples stay under ~1,030 pixels per byte; only nearly
# blank 1-4-bit images (and crafted files) go past 2,000. Images under RATIO_FLOOR_PIXELS are
# cheap whatever their ratio and are not checked.
MAX_PIXELS_PER_BYTE = {"JPEG": 400, "PNG": 2000, "WEBP": 2000, "TIFF": 2000}
RATIO_FLOOR_PIXELS = 1 << 22
_MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
}


class InvalidImageError(InvalidInputError):
    """The input is not an image we accept: unreadable, truncated, unsupported or too large."""


class UnsupportedImageError(InvalidImageError):
    """The input is not an image of an accepted format (sniffed from its bytes)."""


class ImageTooLargeError(InvalidImageError):
    """The input is over a limit: file size, pixel count, or pixels per byte (a bomb)."""


@dataclass(frozen=True)
class DecodedImage:
    """Pixels of a decoded image (H x W x 3, uint8, EXIF orientation applied) and its format."""

    pixels: np.ndarray
    format: str
    lossless: bool

    @property
    def media_type(self) -> str:
        return media_type_of(self.format)


def media_type_of(fmt: str) -> str:
    return _MEDIA_TYPES[fmt]


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, at_least: int | None = None
) -> DecodedImage:
    """Decode ``data`` into an RGB uint8 array.

    Parameters
    ----------
    data : bytes
        The file's bytes.
    max_pixels : int, keyword-only
        Largest accepted width x height, checked from the header before decompressing.
    at_least : int, keyword-only
        For work that looks at the image reduced (to the working resolution, say): a JPEG
        may then be decoded at 1/2, 1/4 or 1/8 of its size in the DCT domain (Pillow's
        ``draft``), its long side kept at least ``at_least`` pixels. At 12 MP a fifth of the
        time of a full decode. These are not the file's pixels: never hash them.

    Returns
    -------
    DecodedImage

    Raises
    ------
    InvalidImageError
        Empty input, not an image, a format outside :data:`ALLOWED_FORMATS`, too many pixels,
        or a truncated / corrupt file.
    """
    with _libtiff_quiet(data):
        return _decode(data, max_pixels, at_least)


def _decode(data: bytes, max_pixels: int, at_least: int | None = None) -> DecodedImage:
    image = _open_checked(data, max_pixels)
    with image:
        fmt = image.format or ""
        try:
            with warnings.catch_warnings():
                # Pillow warns of corrupt EXIF and the like: the pixels decide, and a warning
                # printed by a library would break the CLI's one-line errors.
                warnings.simplefilter("ignore")
                width, height = image.size
                if at_least is not None and fmt == "JPEG" and max(width, height) > at_least:
                    scale = at_least / max(width, height)  # the decoder keeps >= this size
                    image.draft(image.mode, (ceil(width * scale), ceil(height * scale)))
                image.load()
                lossless = is_lossless(fmt, data)
                # Each of these copies the whole image only when it changes something: at
                # 12 MP an unconditional transpose and convert cost 0.1 s and 72 MB.
                oriented = image
                if image.getexif().get(_ORIENTATION, 1) != 1:
                    oriented = ImageOps.exif_transpose(image)
                rgb = oriented if oriented.mode == "RGB" else _to_rgb(oriented)
        except Image.DecompressionBombError as exc:
            raise _too_large(str(exc), max_pixels) from None
        except (OSError, ValueError, SyntaxError, struct.error) as exc:
            raise InvalidImageError(f"corrupt or truncated {fmt} image: {exc}") from None
        pixels = np.asarray(rgb, dtype=np.uint8)  # inside ``with``: before the file closes
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise InvalidImageError(f"could not convert the image to RGB (shape {pixels.shape})")
    return DecodedImage(pixels=np.ascontiguousarray(pixels), format=fmt, lossless=lossless)


def probe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) from the header, with every check :func:`decode_image` makes
    before decompressing (a cheap way to refuse a batch's bad inputs up front)."""
    with _libtiff_quiet(data), _open_checked(data, max_pixels) as image:
        return image.format or "", image.size[0], image.size[1]


@contextmanager
def _libtiff_quiet(data: bytes) -> Iterator[None]:
    """Silence libtiff, which prints its complaints about a damaged TIFF straight to the
    process's stderr (file descriptor 2), under the one line our error gives. Only for TIFF
    input, and only while it is read: the descriptor is restored afterwards."""
    if data[:4] not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """The image opened lazily (header only), its format and pixel count checked."""
    if not data:
        raise InvalidImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and at 2x raises) on large images, where our own limit below
            # decides, and of corrupt metadata, which the pixels do not depend on.
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data), formats=None)
    except UnidentifiedImageError:
        raise UnsupportedImageError("not an image (unrecognised file format)") from None
    except Image.DecompressionBombError as exc:
        raise _too_large(str(exc), max_pixels) from None
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        # e.g. a PNG text or ICC chunk that decompresses past Pillow's limit before the pixels
        raise InvalidImageError(f"unreadable image: {exc}") from None
    fmt = image.format or ""
    width, height = image.size
    problem: str | None = None
    kind: type[InvalidImageError] = ImageTooLargeError
    if fmt not in ALLOWED_FORMATS:
        problem = f"unsupported image format {fmt or 'unknown'}; accepted: JPEG, PNG, WebP, TIFF"
        kind = UnsupportedImageError
    elif width <= 0 or height <= 0:
        problem, kind = "image has no pixels", InvalidImageError
    elif width * height > max_pixels:
        problem = (
            f"image too large: {width}x{height} = {width * height:,} pixels, "
            f"limit is {max_pixels:,}"
        )
    elif width * height > RATIO_FLOOR_PIXELS and width * height > len(data) * (
        ratio := MAX_PIXELS_PER_BYTE[fmt]
    ):
        problem = (
            f"refused as a possible decompression bomb: {width}x{height} = "
            f"{width * height:,} pixels from a file of {len(data):,} bytes "
            f"({width * height / len(data):,.0f} pixels per byte; a {fmt} image of over "
            f"{RATIO_FLOOR_PIXELS:,} pixels may have at most {ratio:,})"
        )
    if problem:
        image.close()
        raise kind(problem)
    return image


@dataclass(frozen=True)
class JpegLuma:
    """A JPEG's luma as its decoder produced it, before any colour conversion.

    ``plane``: H x W uint8, in the file's stored orientation (not the EXIF-rotated one);
    ``table``: the luma quantisation table, 8 x 8 in natural (row-major) order, from the file;
    ``orientation``: the EXIF orientation (1-8) that :func:`decode_image` applied.
    The forward DCT of each aligned 8 x 8 block of ``plane - 128``, divided by ``table`` and
    rounded, gives back the file's quantised coefficients except where the decoder clipped.
    """

    plane: np.ndarray
    table: np.ndarray
    orientation: int


def jpeg_luma(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> JpegLuma | None:
    """The luma plane and quantisation table of a JPEG file; None for any other format and
    for JPEGs whose luma cannot be had without colour conversion (CMYK, YCCK).

    Raises :class:`InvalidImageError` as :func:`decode_image` does for a refused file.
    """
    with _libtiff_quiet(data):
        image = _open_checked(data, max_pixels)
    with image:
        tables = getattr(image, "quantization", None) or {}
        if image.format != "JPEG" or image.mode not in ("RGB", "L") or 0 not in tables:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if image.mode == "RGB":
                    # libjpeg hands out the Y component as decoded (its grey output copies
                    # it; the chroma is never converted): no colour transform to invert.
                    image.draft("L", image.size)
                image.load()
                orientation = int(image.getexif().get(_ORIENTATION, 1))
                plane = np.asarray(image)
        except (OSError, ValueError, SyntaxError, struct.error) as exc:
            raise InvalidImageError(f"unreadable image: {exc}") from None
    table = np.asarray(tables[0], dtype=np.int32)
    if table.size != 64:
        return None
    return JpegLuma(plane, table.reshape(8, 8), orientation if 1 <= orientation <= 8 else 1)


def _too_large(pillow_message: str, max_pixels: int) -> InvalidImageError:
    # Pillow refuses images above twice its own limit while reading the header.
    found = re.search(r"\((\d+) pixels\)", pillow_message)
    size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return ImageTooLargeError(f"image too large: {size}, limit is {max_pixels:,}")


def is_lossless(fmt: str, data: bytes) -> bool:
    """Whether a file of format ``fmt`` (as Pillow names it) stores its pixels losslessly."""
    if fmt == "JPEG":
        return False
    if fmt == "WEBP":
        # RIFF container: 'VP8L' is the lossless bitstream; 'VP8X' (extended) may hold either.
        chunk = data[12:16]
        return chunk == b"VP8L" or (chunk == b"VP8X" and b"VP8L" in data[30:4096])
    return True


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite onto white so transparent areas hash and display consistently.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clip.
        arr = np.asarray(image, dtype=np.uint32)
        grey = (arr >> 8).astype(np.uint8) if arr.max() > 255 else arr.astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return image.convert("RGB")


def rgb_from_array(array: np.ndarray) -> np.ndarray:
    """An H x W x 3 uint8 image from an H x W (grey), H x W x 3 or H x W x 4 uint8 array.

    A fourth channel is alpha and is composited onto white exactly as :func:`decode_image` does
    for a transparent file, so an array and the same picture saved as PNG hash alike.
    """
    if array.dtype != np.uint8:
        raise InvalidImageError(f"array must be uint8, not {array.dtype}")
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InvalidImageError(f"array must be H x W, H x W x 3 or H x W x 4, not {array.shape}")
    if array.shape[2] == 4:
        return np.asarray(_to_rgb(Image.fromarray(np.ascontiguousarray(array), "RGBA")))
    return np.ascontiguousarray(array)


def work_size(height: int, width: int, side: int = WORK_SIDE) -> tuple[int, int]:
    """(width, height) of an image of this size with its long side at most ``side`` (never
    enlarged); by default the working resolution."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def work_image(rgb: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """The image with its long side at most ``side`` (area-averaged, see :func:`shrink_to`),
    or itself if already that small; by default the working resolution."""
    h, w = rgb.shape[:2]
    return shrink_to(rgb, work_size(h, w, side))


def shrink_to(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The image area-averaged down to ``size`` (width, height), or itself if that is its
    size. Large reductions the fast way: whole boxes of k x k pixels first (OpenCV's integer
    path, at 12 MP a third of the cost of area resampling at an odd ratio), then area
    resampling to the size; the last rows and columns that fill no whole box (fewer than k,
    k about half the ratio: under 0.1 % of a camera-size frame, a fraction of a pixel of the
    result) are left out."""
    import cv2  # not at import: commands that only read the ledger need no OpenCV

    h, w = rgb.shape[:2]
    k = min(w // size[0], h // size[1]) // 2
    if k >= 2:
        rgb = cv2.resize(rgb[: h // k * k, : w // k * k], (w // k, h // k),
                         interpolation=cv2.INTER_AREA)  # fmt: skip
    return rgb if rgb.shape[1::-1] == size else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def encode_image(pixels: np.ndarray, fmt: str, *, quality: int = 95) -> bytes:
    """Encode an RGB uint8 array as ``fmt`` (PNG, JPEG, WEBP or TIFF).

    JPEG is written at ``quality`` with 4:4:4 chroma (no subsampling) so that a watermark in
    the luminance and colour detail survive, with the standard Huffman tables (optimised ones
    make the file 2 % smaller and the encode 2.7 times slower: 226 ms instead of 85 at 12 MP),
    by OpenCV's libjpeg-turbo: the same bytes as Pillow's encoder with these settings (a test
    compares them), without Pillow's two copies of the array (30 ms at 12 MP). WebP and TIFF
    are written lossless.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 array, got {pixels.dtype} {pixels.shape}")
    if fmt == "JPEG":
        import cv2  # not at import: commands that only read the ledger need no OpenCV

        settings = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                    cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]  # fmt: skip
        ok, coded = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), settings)
        if not ok:
            raise ValueError("OpenCV could not encode the image as JPEG")
        return coded.tobytes()
    image = Image.fromarray(pixels, "RGB")
    out = io.BytesIO()
    if fmt == "PNG":
        image.save(out, "PNG", optimize=False, compress_level=6)
    elif fmt == "WEBP":
        # the fastest lossless effort: at 1 MP 60 ms (PNG 150 ms, effort 100 / method 4 0.8 s)
        image.save(out, "WEBP", lossless=True, quality=0, method=0)
    elif fmt == "TIFF":
        image.save(out, "TIFF", compression="tiff_deflate")
    else:
        raise ValueError(f"cannot encode format {fmt!r}")
    return out.getvalue()


def same_image_data(a: bytes, b: bytes, fmt: str) -> bool:
    """Whether two JPEG or PNG files hold the same coded image, whatever metadata they carry
    in C2PA's own containers (JPEG APP11 segments, PNG ``caBX`` chunks): every other segment or
    chunk, the coded data included, byte for byte and in order. False when they differ, cannot
    be parsed, or are in another format: the caller then decodes and compares pixels. What
    signing Content Credentials into a file may change, without the cost of decoding it
    (160 ms at 12 MP)."""
    try:
        if fmt == "JPEG":
            return _jpeg_parts(a) == _jpeg_parts(b)
        if fmt == "PNG":
            return _png_parts(a) == _png_parts(b)
    except (ValueError, IndexError, struct.error):  # cut short, or not what it says it is
        pass
    return False


def _jpeg_parts(data: bytes) -> list[bytes]:
    """The segments of a JPEG but its APP11 ones, then everything from the first scan on."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    parts, at = [], 2
    while True:
        if data[at] != 0xFF:
            raise ValueError("a segment does not start with a marker")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xDA:  # start of scan: the coded data and what follows it
            parts.append(data[at:])
            return parts
        if marker == 0xD9 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            raise ValueError("no scan")
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if length < 2 or at + 2 + length > len(data):
            raise ValueError("a segment runs past the end")
        if marker != 0xEB:  # APP11: JUMBF, where C2PA keeps its manifest store
            parts.append(data[at : at + 2 + length])
        at += 2 + length


def _png_parts(data: bytes) -> list[bytes]:
    """The chunks of a PNG but its ``caBX`` ones."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    parts, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        end = at + 12 + length
        if end > len(data):
            raise ValueError("a chunk runs past the end")
        if kind != b"caBX":
            parts.append(data[at:end])
        if kind == b"IEND":
            return parts
        at = end
    raise ValueError("no IEND chunk")
