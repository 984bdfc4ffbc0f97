"""SHA-256 of file and pixels; PDQ with ThreatExchange's hex convention."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
from blockimage.imaging import decode_image, encode_image


@pytest.fixture(scope="module")
def astronaut(photos):
    return np.asarray(Image.open(photos["astronaut"]).convert("RGB"))


def test_pixel_hash_is_row_major_rgb(astronaut):
    assert pixel_sha256(astronaut) == hashlib.sha256(astronaut.tobytes(order="C")).hexdigest()
    transposed = np.ascontiguousarray(astronaut.transpose(1, 0, 2))
    assert pixel_sha256(astronaut) != pixel_sha256(transposed)


def test_pixel_hash_ignores_the_container_but_the_file_hash_does_not(astronaut):
    png, tiff = png_bytes(astronaut), encode_image(astronaut, "TIFF")
    fp_png = fingerprint(png, decode_image(png).pixels)
    fp_tiff = fingerprint(tiff, decode_image(tiff).pixels)
    assert fp_png.sha256_pixels == fp_tiff.sha256_pixels
    assert fp_png.sha256_file == hashlib.sha256(png).hexdigest() != fp_tiff.sha256_file


def test_pdq_hex_follows_threatexchange_convention(astronaut):
    vector, quality = pdqhash.compute(astronaut)
    bits = "".join(str(int(x)) for x in vector)
    expected = f"{int(bits, 2):064x}"  # ThreatExchange: vector[0] is the most significant bit
    assert pdq_hash(astronaut) == (expected, int(quality))


def test_pdq_of_a_large_image_is_the_pdq_of_its_work_image(astronaut):
    """A large image is hashed through the working resolution, so a caller that has the work
    image (the matchers' Suspect) gets the same hash from it, bit for bit."""
    from blockimage.imaging import work_image

    large = np.asarray(Image.fromarray(astronaut).resize((2000, 1500), Image.Resampling.LANCZOS))
    assert pdq_hash(large) == pdq_hash(work_image(large))
    assert pdq_distance(pdq_hash(large)[0], pdq_hash(astronaut)[0]) <= 16


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


def test_large_images_are_hashed_at_pdq_side_and_stay_near_the_full_size_hash(astronaut):
    big = np.asarray(Image.fromarray(astronaut).resize((2400, 2400), Image.LANCZOS))
    reduced, _ = pdq_hash(big)
    vector, _ = pdqhash.compute(big)
    full = np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes().hex()
    assert reduced != full  # the downsample is taken (the two differ by a few bits) ...
    assert pdq_distance(reduced, full) <= PDQ_MATCH_THRESHOLD  # ... and still match
    # copies of one picture hashed this way stay as close as before
    resaved = decode_image(jpeg_bytes(big, quality=75)).pixels
    assert pdq_distance(reduced, pdq_hash(resaved)[0]) <= 8


# Meta's published PDQ hash of its reference image (tests/data/pdq/README.md).
BRIDGE = Path(__file__).parent / "data" / "pdq" / "bridge-1-original.jpg"
BRIDGE_PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def test_pdq_of_the_reference_image_is_the_published_hash(monkeypatch):
    data = BRIDGE.read_bytes()
    assert hashlib.sha256(data).hexdigest().startswith("b5b0799616df52d4")
    pixels = decode_image(data).pixels  # 1600 x 1004
    # At full size (no downsample first) our decoding, hashing and hex are Meta's, bit for bit.
    monkeypatch.setattr("blockimage.fingerprint.PDQ_SIDE", 10**6)
    assert pdq_hash(pixels) == (BRIDGE_PDQ, 100)
    monkeypatch.undo()
    # As registered (fit within 512 px first) it stays a few bits away: a match.
    reduced, quality = pdq_hash(pixels)
    assert quality == 100 and 0 < pdq_distance(reduced, BRIDGE_PDQ) <= 12
