"""Quality metrics: PSNR, SSIM, NC."""

from __future__ import annotations

import numpy as np
import pytest

from blockimage.quality import normalized_correlation, psnr, ssim


def test_psnr_of_a_known_error():
    a = np.full((10, 10, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0] = 110  # MSE = 100 / 300
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (100 / 300)))
    assert psnr(a, a) == float("inf")


def test_psnr_equals_scikit_image(photos):
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio

    a = np.asarray(Image.open(photos["coffee"]).convert("RGB"))
    b = np.clip(a.astype(int) + np.random.default_rng(1).integers(-9, 10, a.shape), 0, 255)
    b = b.astype(np.uint8)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), rel=1e-9)


def test_ssim_is_one_for_identical_and_lower_for_noise():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    a = np.dstack([yy * 3, xx * 3, (yy + xx) * 2]).astype(np.uint8)  # smooth gradients
    noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, noisy) < 0.9


@pytest.mark.parametrize("change", ["noise", "jpeg", "blur", "brightness"])
def test_ssim_equals_scikit_image_on_luma(photos, change):
    import cv2
    from PIL import Image
    from skimage.metrics import structural_similarity
    from tests.conftest import jpeg_bytes

    from blockimage.imaging import decode_image

    a = np.asarray(Image.open(photos["astronaut"]).convert("RGB"))
    rng = np.random.default_rng(2)
    b = {
        "noise": lambda: np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8),
        "jpeg": lambda: decode_image(jpeg_bytes(a, 40)).pixels,
        "blur": lambda: cv2.GaussianBlur(a, (0, 0), 2.0),
        "brightness": lambda: np.clip(a.astype(int) + 25, 0, 255).astype(np.uint8),
    }[change]()
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    theirs = structural_similarity(
        a.astype(np.float32) @ luma,
        b.astype(np.float32) @ luma,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(a, b) == pytest.approx(theirs, abs=2e-5)


def test_nc_of_bit_vectors():
    bits = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    assert normalized_correlation(bits, bits) == 1.0
    assert normalized_correlation(bits, 1 - bits) == -1.0
    assert normalized_correlation(bits, np.array([0, 1, 1, 0, 0, 1, 1, 0])) == 0.0


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
