"""The one door for images a user hands in: a path, the file's bytes, or a pixel array.

Every entry point (the node's register and verify, every CLI command, the HTTP service) loads
its input through :func:`load_image`, so the same limits apply everywhere: the file size is
checked before the file is read, the pixel count before it is decompressed
(:func:`blockimage.imaging.decode_image`), and transparency is composited onto white for files
and arrays alike. Failures are :class:`~blockimage.imaging.InvalidImageError` naming the input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InvalidInputError
from .imaging import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    ImageTooLargeError,
    InvalidImageError,
    decode_image,
    probe_image,
    rgb_from_array,
)

__all__ = ["ImageSource", "LoadedImage", "load_image", "probe_file", "read_file"]

ImageSource = str | os.PathLike[str] | bytes | bytearray | np.ndarray


@dataclass(frozen=True)
class LoadedImage:
    """An input image: the file's bytes (None for an array), its pixels, and its path if any."""

    data: bytes | None
    image: DecodedImage
    path: Path | None


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> LoadedImage:
    """Read and decode ``source`` under the limits; raise :class:`InvalidImageError` if refused.

    An array is taken as the pixels of a lossless image (it has no file, so no file hash);
    bytes are a file's content; anything else is a path to a regular file.
    """
    if isinstance(source, np.ndarray):
        pixels = rgb_from_array(source)
        if pixels.shape[0] * pixels.shape[1] > max_pixels:
            raise ImageTooLargeError(
                f"array too large: {pixels.shape[1]}x{pixels.shape[0]}, limit is {max_pixels:,} "
                "pixels"
            )
        return LoadedImage(None, DecodedImage(pixels, "PNG", lossless=True), None)
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        _check_size(len(data), "input", max_file_bytes)
        return LoadedImage(data, decode_image(data, max_pixels=max_pixels), None)
    path = Path(source)
    data = read_file(
        path, max_bytes=max_file_bytes, error=InvalidImageError, too_large=ImageTooLargeError
    )
    try:
        image = decode_image(data, max_pixels=max_pixels)
    except InvalidImageError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    return LoadedImage(data, image, path)


def probe_file(
    path: Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> None:
    """Refuse ``path`` now if :func:`load_image` would refuse it before decoding (missing,
    special, too large, not an accepted image by its header): what a batch checks for every
    input before it starts, so that a bad input is reported before anything is written."""
    data = read_file(
        path, max_bytes=max_file_bytes, error=InvalidImageError, too_large=ImageTooLargeError
    )
    try:
        probe_image(data, max_pixels=max_pixels)
    except InvalidImageError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def read_file(
    path: Path,
    *,
    max_bytes: int,
    error: type[InvalidInputError] = InvalidInputError,
    too_large: type[InvalidInputError] | None = None,
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, checked before reading (a device
    such as ``/dev/zero`` or a FIFO is refused, not read); ``error`` says what is wrong,
    ``too_large`` (default ``error``) that the file is over ``max_bytes``."""
    try:
        if not path.is_file():
            if path.is_dir():
                raise error(f"{path}: is a directory")
            if not path.exists():
                raise error(f"{path}: no such file")
            raise error(f"{path}: not a regular file")
        size = path.stat().st_size
        if size > max_bytes:
            raise (too_large or error)(
                f"{path}: file too large ({size:,} bytes, limit {max_bytes:,})"
            )
        return path.read_bytes()
    except PermissionError:
        raise error(f"{path}: permission denied") from None
    except OSError as exc:
        raise error(f"{path}: {exc.strerror or exc}") from None


def _check_size(size: int, what: str, limit: int) -> None:
    if size > limit:
        raise ImageTooLargeError(f"{what}: file too large ({size:,} bytes, limit {limit:,})")
