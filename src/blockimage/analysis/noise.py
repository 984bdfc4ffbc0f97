"""Local noise level, from the kurtosis of band-pass responses.

After Lyu, Pan & Zhang, "Exposing region splicing forgeries with blind local noise
estimation", IJCV 110(2), 2014. Natural images have band-pass responses of nearly constant
kurtosis across frequency bands; added white noise of variance s2 lowers the kurtosis of a band
of variance v_k as kappa_k = kappa (1 - s2 / v_k)^2. Over the 15 AC bands of a 4 x 4 DCT, in
every window, sqrt(kappa_k) is linear in 1 / v_k, so one least-squares line gives the
window's clean kurtosis (intercept) and noise variance (-slope / intercept) in closed form.
The moments are local means (box filters), so the whole map costs a few filters.

A region spliced in from another camera, or resized, denoised or inpainted, usually has another
noise level than its surroundings: :func:`noise_level_map` is the standard deviation per
window, and :func:`inconsistency` the robust z-score of its logarithm. Pure: arrays in.
"""

from __future__ import annotations

import numpy as np

__all__ = ["STEP", "inconsistency", "noise_level_map"]

STEP = 8  # the map's cell, in pixels of the plane it was computed on
_WINDOW = 32  # pixels over which the moments are taken
_B = 4
_BASIS = [  # the 1-D 4-point DCT basis vectors
    (
        np.sqrt((1 if u == 0 else 2) / _B) * np.cos((2 * np.arange(_B) + 1) * u * np.pi / (2 * _B))
    ).astype(np.float32)
    for u in range(_B)
]


def noise_level_map(grey: np.ndarray) -> np.ndarray:
    """Noise standard deviation (grey levels) per ``STEP`` x ``STEP`` cell of a 2-D plane,
    each estimated over the ``_WINDOW`` x ``_WINDOW`` pixels around it.

    The 4 x 4 DCT bands are separable: four filters along the rows, then four along the
    columns of each; the moments are summed per cell, then over the cells of a window."""
    import cv2  # not at import: the CLI's quick commands need no OpenCV

    plane = grey.astype(np.float32)
    rows, cols = plane.shape[0] // STEP, plane.shape[1] // STEP
    span = _WINDOW // STEP
    identity = np.ones(1, dtype=np.float32)

    def window_mean(values: np.ndarray) -> np.ndarray:
        cropped = values[: rows * STEP, : cols * STEP]
        cells = cv2.resize(cropped, (cols, rows), interpolation=cv2.INTER_AREA)  # cell means
        return cv2.boxFilter(cells, -1, (span, span), borderType=cv2.BORDER_REFLECT)

    root_kurtosis, inverse_variance = [], []
    for u, column in enumerate(_BASIS):
        along = cv2.sepFilter2D(plane, -1, identity, column, borderType=cv2.BORDER_REFLECT)
        for v, row in enumerate(_BASIS):
            if u == 0 and v == 0:
                continue  # the DC band is the picture, not its noise
            response = cv2.sepFilter2D(along, -1, row, identity, borderType=cv2.BORDER_REFLECT)
            square = cv2.multiply(response, response)
            variance = window_mean(square) + 1e-3
            fourth = window_mean(cv2.multiply(square, square))
            root_kurtosis.append(np.sqrt(np.maximum(fourth / (variance * variance) - 3.0, 0.0)))
            inverse_variance.append(1.0 / variance)
    a, b = np.stack(root_kurtosis), np.stack(inverse_variance)
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov = (a * b).mean(axis=0) - mean_a * mean_b
    var_b = (b * b).mean(axis=0) - mean_b * mean_b + 1e-12
    slope = cov / var_b
    intercept = mean_a - slope * mean_b
    # sigma^2 = -slope / intercept, within [0, the smallest band variance]
    ceiling = 1.0 / b.max(axis=0)
    noise_variance = np.where(intercept > 1e-6, -slope / np.maximum(intercept, 1e-6), 0.0)
    result: np.ndarray = np.sqrt(np.clip(noise_variance, 0.0, ceiling)).astype(np.float32)
    return result


def inconsistency(sigma: np.ndarray) -> np.ndarray:
    """Robust z-score of log noise level, per cell: how far each cell's noise is from the
    picture's typical noise, in units of its spread (median absolute deviation)."""
    log_sigma = np.log(sigma + 0.25)
    median = float(np.median(log_sigma))
    mad = float(np.median(np.abs(log_sigma - median))) * 1.4826 + 0.05
    z: np.ndarray = ((log_sigma - median) / mad).astype(np.float32)
    return z
