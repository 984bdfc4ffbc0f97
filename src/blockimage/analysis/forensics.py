"""Blind forensic signals of local tampering, from one image and nothing else.

Each signal measures how *inconsistent* a property is across the picture — an untouched photo
went through one camera pipeline and one compression, so its noise, its error level and its
blockiness are spatially homogeneous, while a pasted, cloned or inpainted area usually differs:

- error level analysis (Krawetz 2007): re-save as JPEG q90; a region with another compression
  history re-saves with another error;
- noise residual inconsistency: the high-pass residual's local standard deviation, block by
  block (inpainting and splicing change the noise);
- JPEG grid (blockiness) inconsistency: the 8x8 boundary discontinuities of the luma, block by
  block (aligned / misaligned / missing grids after splicing);
- copy-move: ORB keypoints matched against the same image; many matches sharing one displacement
  are a cloned region (Amerini et al. 2011, in spirit).

:func:`forensic_features` returns a fixed-length vector (:data:`FEATURE_NAMES`). Pure: arrays in.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..imaging import work_image, work_size
from ..keypoints import detect

__all__ = ["FEATURE_NAMES", "MIN_SIDE", "forensic_features", "forensics_possible"]

# The statistics are over 32 x 32 blocks of the working image: fewer than two blocks a side say
# nothing about consistency across the picture.
MIN_SIDE = 64

_BLOCK = 32
_CLONE_KEYPOINTS = 3000
# Self-matching 5000 binary descriptors by brute force is quadratic (~80 ms); FLANN's LSH index
# (locality-sensitive hashing, for Hamming distance) finds the near-duplicates much faster.
_LSH: dict[str, bool | int | float | str] = {
    "algorithm": 6,
    "table_number": 6,
    "key_size": 12,
    "multi_probe_level": 1,
}


def _blocks(plane: np.ndarray, size: int = _BLOCK) -> np.ndarray:
    h, w = plane.shape[0] // size * size, plane.shape[1] // size * size
    return plane[:h, :w].reshape(h // size, size, w // size, size).swapaxes(1, 2)


def _spread(values: np.ndarray) -> list[float]:
    """Inconsistency statistics of block values: CV, robust z of both tails, tail ratios,
    kurtosis. Both tails matter: a pasted area can be noisier, a painted one noiseless."""
    v = values.ravel().astype(np.float64)
    mean, std = float(v.mean()), float(v.std()) + 1e-9
    median = float(np.median(v))
    mad = float(np.median(np.abs(v - median))) * 1.4826 + 1e-6
    top, bottom = float(np.percentile(v, 99)), float(np.percentile(v, 1))
    kurt = float(np.mean(((v - mean) / std) ** 4))
    return [
        std / (abs(mean) + 1e-6),
        (top - median) / mad,
        top / (median + 1e-6),
        kurt,
        (median - bottom) / mad,
        (bottom + 1e-3) / (median + 1e-3),
    ]


def _ela_map(rgb: np.ndarray) -> np.ndarray:
    # OpenCV's codec expects BGR; JPEG's colour transform weighs the channels differently.
    _, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:  # cannot happen for a buffer OpenCV just encoded
        raise RuntimeError("OpenCV could not decode its own JPEG")
    resaved = decoded[:, :, ::-1].astype(np.float32)
    return np.abs(rgb.astype(np.float32) - resaved).mean(axis=2)


def _ela(error: np.ndarray) -> list[float]:
    block_means = _blocks(error).mean(axis=(2, 3))
    return [float(error.mean()), *_spread(block_means)]


def _noise(grey: np.ndarray, residual: np.ndarray) -> list[float]:
    block_std = _blocks(residual).std(axis=(2, 3))
    texture = _blocks(grey).std(axis=(2, 3)) + 1.0
    return [float(residual.std()), *_spread(block_std), *_spread(block_std / np.sqrt(texture))]


def _jpeg_grid(grey: np.ndarray) -> list[float]:
    dx = np.abs(np.diff(grey, axis=1))
    h, w = dx.shape
    cols = np.arange(w)
    on_grid = (cols % 8) == 7
    boundary = dx[:, on_grid].mean() + 1e-6
    inside = dx[:, ~on_grid].mean() + 1e-6
    grid = np.zeros_like(dx)
    grid[:, on_grid] = dx[:, on_grid]
    local = _blocks(grid[: h // 32 * 32, : w // 32 * 32]).mean(axis=(2, 3))
    local_all = _blocks(dx[: h // 32 * 32, : w // 32 * 32]).mean(axis=(2, 3)) + 1e-3
    return [float(boundary / inside), *_spread(local / local_all)]


def _local_anomaly(value: np.ndarray, texture: np.ndarray) -> list[float]:
    """Where a block's value departs from what its texture predicts, and how large that area is.

    ``value`` and ``texture`` are per-block; log(value) is fitted as a line in log(texture)
    (least squares, then refitted without the worst 10 %), the residual is z-scored robustly and
    smoothed over 2 x 2 blocks (an edit spans several blocks); returned: the largest |z| and the
    size (in blocks) of the largest connected area with |z| > 2.5.
    """
    lv, lt = np.log(value + 1e-3).ravel(), np.log(texture + 1.0).ravel()
    a = np.column_stack([lt, np.ones_like(lt)])
    coef, *_ = np.linalg.lstsq(a, lv, rcond=None)
    res = lv - a @ coef
    keep = np.abs(res) <= np.quantile(np.abs(res), 0.9)
    coef, *_ = np.linalg.lstsq(a[keep], lv[keep], rcond=None)
    res = (lv - a @ coef).reshape(value.shape)
    mad = float(np.median(np.abs(res - np.median(res)))) * 1.4826 + 1e-6
    z = cv2.blur(((res - np.median(res)) / mad).astype(np.float32), (2, 2))
    flagged = (np.abs(z) > 2.5).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(flagged, connectivity=8)
    largest = float(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0.0
    return [float(np.abs(z).max()), largest]


def _copy_move(grey: np.ndarray) -> list[float]:
    points, descriptors = detect(grey, _CLONE_KEYPOINTS, fast_threshold=10)
    if len(points) < 10:
        return [0.0, 0.0]
    points = points.astype(np.float64)  # offsets in double precision, as the model was trained
    matcher = cv2.FlannBasedMatcher(_LSH, {"checks": 32})
    pairs = matcher.knnMatch(descriptors, descriptors, k=2)  # itself and its best other
    offsets = []
    for candidates in pairs:
        for m in candidates:
            # An exact clone ties with the keypoint itself at distance 0: skip self by index.
            if m.trainIdx == m.queryIdx or m.distance > 40:
                continue
            a, b = points[m.queryIdx], points[m.trainIdx]
            d = (float(b[0] - a[0]), float(b[1] - a[1]))
            if d[0] * d[0] + d[1] * d[1] > 400 and (d[0] > 0 or (d[0] == 0 and d[1] > 0)):
                offsets.append(d)
    if not offsets:
        return [0.0, 0.0]
    quantised = np.round(np.array(offsets) / 6.0).astype(np.int64)
    _, counts = np.unique(quantised, axis=0, return_counts=True)
    return [float(counts.max()), float(len(offsets)) / len(points)]


FEATURE_NAMES: tuple[str, ...] = (
    "ela_mean", "ela_cv", "ela_maxz", "ela_tail", "ela_kurt", "ela_minz", "ela_lowtail",
    "noise_std", "noise_cv", "noise_maxz", "noise_tail", "noise_kurt", "noise_minz",
    "noise_lowtail", "noisen_cv", "noisen_maxz", "noisen_tail", "noisen_kurt", "noisen_minz",
    "noisen_lowtail", "grid_ratio", "grid_cv", "grid_maxz", "grid_tail", "grid_kurt",
    "grid_minz", "grid_lowtail", "clone_cluster", "clone_rate",
    "noise_local_z", "noise_local_area", "ela_local_z", "ela_local_area",
)  # fmt: skip


def forensics_possible(rgb: np.ndarray) -> bool:
    """Whether the image is large enough, at the working resolution, for the features."""
    return min(work_size(*rgb.shape[:2])) >= MIN_SIDE


def forensic_features(rgb: np.ndarray) -> np.ndarray:
    """The forensic feature vector of an RGB uint8 image (see :data:`FEATURE_NAMES`)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 array, got {rgb.dtype} {rgb.shape}")
    img = work_image(rgb)
    if min(img.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"the working image is {img.shape[1]}x{img.shape[0]}; the forensic features need "
            f"{MIN_SIDE} pixels on each side (callers check forensics_possible first)"
        )
    grey_u8 = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    grey = grey_u8.astype(np.float32)
    texture = _blocks(cv2.GaussianBlur(grey, (0, 0), 2.0), 16).std(axis=(2, 3))
    residual = grey - cv2.medianBlur(grey_u8, 3).astype(np.float32)
    noise = _blocks(residual, 16).std(axis=(2, 3))
    ela = _ela_map(img)
    values = [
        *_ela(ela),
        *_noise(grey, residual),
        *_jpeg_grid(grey),
        *_copy_move(grey_u8),
        *_local_anomaly(noise, texture),
        *_local_anomaly(_blocks(ela, 16).mean(axis=(2, 3)), texture),
    ]
    return np.array(values, dtype=np.float64)
