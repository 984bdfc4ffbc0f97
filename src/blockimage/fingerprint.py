"""Fingerprints of an image: SHA-256 of the file, SHA-256 of the pixels, and PDQ.

PDQ is Meta's 256-bit perceptual hash (ThreatExchange, ``hashing/hashing.pdf``), computed by the
``pdqhash`` package. Its hex form follows ThreatExchange's convention: the first bit of the hash
vector is the most significant bit of the 64-digit hex string. Two hashes within Hamming distance
31 are a match (Meta's recommended threshold); hashes of quality below 50 are unreliable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pdqhash

from .imaging import work_image

__all__ = [
    "PDQ_MATCH_THRESHOLD",
    "PDQ_CANDIDATE_DISTANCE",
    "PDQ_MIN_QUALITY",
    "PDQ_SIDE",
    "Fingerprint",
    "file_sha256",
    "pixel_sha256",
    "pdq_hash",
    "pdq_distance",
    "fingerprint",
]

PDQ_MATCH_THRESHOLD = 31
# Looser distance at which a registered image is only a *candidate*, to be confirmed by a pixel
# comparison: small crops move PDQ by 30-90 bits; unrelated photos sit at 106+ (measured on 25
# photos, see benchmarks/verify_eval.py; binomial expectation 128 +- 8).
PDQ_CANDIDATE_DISTANCE = 90
PDQ_MIN_QUALITY = 50
PDQ_SIDE = 512  # the long side PDQ is computed at


@dataclass(frozen=True)
class Fingerprint:
    sha256_file: str
    sha256_pixels: str
    pdq: str
    pdq_quality: int


def file_sha256(data: bytes) -> str:
    """Hex SHA-256 of the file's bytes."""
    return hashlib.sha256(data).hexdigest()


def pixel_sha256(pixels: np.ndarray) -> str:
    """Hex SHA-256 of an RGB uint8 image, row-major (H, W, channel) order."""
    _check_rgb(pixels)
    return hashlib.sha256(np.ascontiguousarray(pixels).data).hexdigest()


def pdq_hash(pixels: np.ndarray) -> tuple[str, int]:
    """PDQ hash of an RGB uint8 image as (64 hex digits, quality 0-100).

    An image larger than :data:`PDQ_SIDE` on its long side is first area-averaged down to
    it, as Meta's reference hasher does before its Jarosz filter ("prohibitively expensive for
    larger images", ThreatExchange ``pdq/cpp``): PDQ only ever looks at a 64 x 64 average, and
    at 12 MP the full-size filter takes ~600 ms. The reduction goes through the working
    resolution (:func:`blockimage.imaging.work_image`), so an image and its work image hash
    alike and a caller that has the work image already (:class:`blockimage.matchers.Suspect`)
    hashes that. Against full-size hashing the bits move by 8.7 on average, 18 at most, on the
    25 benchmark photos at 1155 and 3000 px; against each other, two copies hashed this way
    move as little as before (a JPEG 75 re-save: 2 at most).
    """
    _check_rgb(pixels)
    if max(pixels.shape[:2]) > PDQ_SIDE:
        pixels = work_image(work_image(pixels), PDQ_SIDE)
    vector, quality = pdqhash.compute(np.ascontiguousarray(pixels))
    bits = np.asarray(vector, dtype=np.uint8)
    return np.packbits(bits).tobytes().hex(), int(quality)


def pdq_distance(a: str, b: str) -> int:
    """Hamming distance between two PDQ hashes in hex."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def fingerprint(data: bytes, pixels: np.ndarray) -> Fingerprint:
    """All three fingerprints of an image file and its decoded pixels."""
    pdq, quality = pdq_hash(pixels)
    return Fingerprint(file_sha256(data), pixel_sha256(pixels), pdq, quality)


def _check_rgb(pixels: np.ndarray) -> None:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 array, got {pixels.dtype} {pixels.shape}")
