"""SHA-256 of file and pixels; PDQ with ThreatExchange's hex convention."""

from __future__ import annotations

import hashlib

import numpy as np
import pdqhash
import pytest
from PIL import Image
from tests.conftest import jpeg_bytes, png_bytes

from blockimage.fingerprint import (
    PDQ_MATCH_THRESHOLD,
    fingerprint,
    pdq_distance,
    pdq_hash,
    pixel_sha256,
)
from blockimage.imaging import decode_image


@pytest.fixture(scope="module")
def astronaut(photos):
    return np.asarray(Image.open(photos["astronaut"]).convert("RGB"))


def test_pixel_hash_is_row_major_rgb(astronaut):
    assert pixel_sha256(astronaut) == hashlib.sha256(astronaut.tobytes(order="C")).hexdigest()
    assert pixel_sha256(astronaut) != pixel_sha256(
        np.ascontiguousarray(astronaut.transpose(1, 0, 2))
    )


def test_pixel_hash_ignores_container_but_file_hash_does_not(astronaut):
    a, b = png_bytes(astronaut), png_bytes(astronaut) + b""  # same pixels
    fa = fingerprint(a, decode_image(a).pixels)
    tiff = decode_image(
        __import__("blockimage.imaging", fromlist=["x"]).encode_image(astronaut, "TIFF")
    )
    assert fa.sha256_pixels == pixel_sha256(tiff.pixels)
    assert fa.sha256_file == hashlib.sha256(b).hexdigest()


def test_pdq_hex_follows_threatexchange_convention(astronaut):
    vector, quality = pdqhash.compute(astronaut)
    bits = "".join(str(int(x)) for x in vector)
    expected = f"{int(bits, 2):064x}"  # ThreatExchange: vector[0] is the most significant bit
    assert pdq_hash(astronaut) == (expected, int(quality))


def test_pdq_matches_reencoded_copy_and_not_another_photo(astronaut, photos):
    h, _ = pdq_hash(astronaut)
    reencoded = decode_image(jpeg_bytes(astronaut, 60)).pixels
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256)))
    other = np.asarray(Image.open(photos["coffee"]).convert("RGB"))
    assert pdq_distance(h, pdq_hash(reencoded)[0]) <= PDQ_MATCH_THRESHOLD
    assert pdq_distance(h, pdq_hash(small)[0]) <= PDQ_MATCH_THRESHOLD
    assert pdq_distance(h, pdq_hash(other)[0]) > 80


def test_non_rgb_arrays_are_refused():
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        pixel_sha256(np.zeros((4, 4), np.uint8))
