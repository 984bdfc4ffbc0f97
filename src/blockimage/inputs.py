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

from .imaging import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    InvalidImageError,
    decode_image,
    rgb_from_array,
)

__all__ = ["ImageSource", "LoadedImage", "load_image"]

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
            raise InvalidImageError(
                f"array too large: {pixels.shape[1]}x{pixels.shape[0]}, limit is {max_pixels:,} "
                "pixels"
            )
        return LoadedImage(None, DecodedImage(pixels, "PNG", lossless=True), None)
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        _check_size(len(data), "input", max_file_bytes)
        return LoadedImage(data, decode_image(data, max_pixels=max_pixels), None)
    path = Path(source)
    try:
        if not path.is_file():
            if path.is_dir():
                raise InvalidImageError(f"{path}: is a directory")
            if not path.exists():
                raise InvalidImageError(f"{path}: no such file")
            raise InvalidImageError(f"{path}: not a regular file")
        _check_size(path.stat().st_size, str(path), max_file_bytes)
        data = path.read_bytes()
    except PermissionError:
        raise InvalidImageError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InvalidImageError(f"{path}: {exc.strerror or exc}") from None
    try:
        image = decode_image(data, max_pixels=max_pixels)
    except InvalidImageError as exc:
        raise InvalidImageError(f"{path}: {exc}") from None
    return LoadedImage(data, image, path)


def _check_size(size: int, what: str, limit: int) -> None:
    if size > limit:
        raise InvalidImageError(f"{what}: file too large ({size:,} bytes, limit {limit:,})")
