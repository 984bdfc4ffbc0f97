"""One input loader for every entry point: paths, bytes and arrays under the same limits."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import png_bytes

from blockimage.imaging import InvalidImageError
from blockimage.inputs import load_image


@pytest.fixture(scope="module")
def rgba() -> np.ndarray:
    """A picture with a transparent hole, a half-transparent band and an opaque rest."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (120, 160, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    pixels[20:60, 30:90, 3] = 0
    pixels[80:100, :, 3] = 128
    return pixels


def test_an_rgba_array_and_the_same_rgba_png_load_to_the_same_pixels(rgba):
    from_array = load_image(rgba).image.pixels
    from_file = load_image(png_bytes(rgba)).image.pixels
    assert from_array.shape == (120, 160, 3)
    assert np.array_equal(from_array, from_file)
    assert (from_array[30, 40] == 255).all()  # transparent: composited onto white, not dropped


def test_grey_arrays_become_rgb_and_bad_arrays_are_refused():
    grey = np.arange(256 * 4, dtype=np.uint16).reshape(32, 32).astype(np.uint8)
    assert np.array_equal(load_image(grey).image.pixels[..., 1], grey)
    with pytest.raises(InvalidImageError, match="uint8"):
        load_image(grey.astype(np.float32))
    with pytest.raises(InvalidImageError, match="H x W x 4"):
        load_image(np.zeros((4, 4, 2), np.uint8))


def test_limits_apply_to_paths_bytes_and_arrays(tmp_path, rgba):
    data = png_bytes(rgba[..., :3])
    path = tmp_path / "small.png"
    path.write_bytes(data)
    loaded = load_image(path)
    assert loaded.path == path and loaded.data == data
    for source in (path, data):
        with pytest.raises(InvalidImageError, match="file too large"):
            load_image(source, max_file_bytes=len(data) - 1)
        with pytest.raises(InvalidImageError, match="too large"):
            load_image(source, max_pixels=160 * 120 - 1)
    with pytest.raises(InvalidImageError, match="array too large"):
        load_image(rgba, max_pixels=100)


def test_a_path_that_is_not_a_readable_file_is_named(tmp_path):
    with pytest.raises(InvalidImageError, match="nope.jpg: no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InvalidImageError, match="is a directory"):
        load_image(tmp_path)
    bad = tmp_path / "bad.png"
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    bad.write_bytes(png_bytes(noise)[:4000])  # cut inside the pixel data
    with pytest.raises(InvalidImageError, match="bad.png: corrupt or truncated"):
        load_image(bad)
