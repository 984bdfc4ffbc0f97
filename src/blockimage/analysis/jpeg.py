"""Aligned double JPEG compression, block by block, from the file's own DCT coefficients.

After Bianchi & Piva, "Image forgery localization via block-grained analysis of JPEG
artifacts", IEEE Trans. Inf. Forensics Security 7(3), 2012 (the A-DJPG model). A photo
compressed at a quantisation step q1 and re-saved at q2 on the same 8 x 8 grid has, in every
DCT frequency, quantised values k whose count is modulated by n(k) = how many multiples of q1
round to k at step q2 (some k are impossible when q1 > q2, others doubly likely). A region
pasted in and saved once (or whose first grid did not line up) has the smooth histogram of a
single compression. Per frequency, with p1 the single-compression distribution,

    p(k | double) = p1(k) n(k) q1 / q2,  so  L(k) = p(k | single) / p(k | double) = q2 / (q1 n(k))

Here n(k) includes the first decoder's rounding (a Gaussian error of ``_ROUNDING`` steps), q1 is
estimated per frequency by maximum likelihood of the image's own histogram under a mixture of
the two hypotheses (the paper's EM, replaced by a grid over q1 and the mixing weight), and the
log-likelihood ratios of the first :data:`FREQUENCIES` AC frequencies are summed per block. A
zero coefficient carries no evidence here (flat blocks are undecided, not accused).

The coefficients are recovered from the file (:func:`blockimage.imaging.jpeg_luma`: the
decoder's luma before colour conversion, its forward DCT divided by the file's quantisation
table). Nothing is re-encoded. Tests check them against jpeglib's direct read of the file
(libjpeg's entropy decoder): equal wherever the step is 3 or more and the decoder clipped no
pixel; where the step is 1 or 2 (quality 90 and up, low frequencies) the decoder's rounding to
whole grey levels moves some by one, which the model's rounding term absorbs. Pure: arrays in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..imaging import JpegLuma

__all__ = [
    "FREQUENCIES",
    "DoubleJpeg",
    "aligned_double_jpeg",
    "dct_blocks",
    "earlier_jpeg",
    "ijg_table",
]

# Zig-zag order of the 8 x 8 DCT (natural row-major indices).
_ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
    20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
])  # fmt: skip
FREQUENCIES = 15  # the first AC frequencies in zig-zag order (the paper uses 6-15)
_MIN_NONZERO = 300  # a frequency with fewer non-zero coefficients says too little
_ROUNDING = 0.35  # std of the first decoder's rounding, in units of the coefficient (DCT of +-0.5)
_MAX_Q1 = 64
_CALIBRATION_BLOCKS = 50_000
_BAND = 128  # block rows per slice of the DCT
_ALPHAS = np.array([0.0, 0.1, 0.25, 0.5])  # share of single-compressed coefficients, tried
_MAX_K = 60  # histogram range, in quantisation steps either side of zero
_CLIP = np.log(20.0)  # one frequency of one block moves the odds at most 20:1
# nats per non-zero coefficient a double-compression fit must gain over a single compression:
# double-compressed photos gained 0.18-1.5, single-compressed ones at most 0.035
_MIN_GAIN = 0.1
_PERIODIC = 0.5  # E[cos(2 pi c / q)] that shows a quantisation step in a lossless picture

# The IJG (libjpeg) standard luminance table, scaled by quality as libjpeg does.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69,
    56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81,
    104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
])  # fmt: skip
_D = np.array(
    [[np.sqrt((1 if u == 0 else 2) / 8) * np.cos((2 * x + 1) * u * np.pi / 16) for x in range(8)]
     for u in range(8)]
)  # fmt: skip


_D32 = _D.astype(np.float32)


def ijg_table(quality: int) -> np.ndarray:
    """libjpeg's luminance table at ``quality`` (1-100), natural order, 64 values."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_IJG_LUMA * scale + 50) // 100, 1, 255)


def _dct(plane: np.ndarray, size: int = 8) -> np.ndarray:
    """The orthonormal 8 x 8 DCT of ``plane - 128`` on the grid from (0, 0), its frequencies
    (u, v) < ``size`` only: (rows, cols, size * size), index u * size + v. Two small matrix
    products (columns, then rows of every block), as the DCT is separable."""
    h, w = plane.shape[0] // 8 * 8, plane.shape[1] // 8 * 8
    basis = _D32[:size]
    x = plane[:h, :w].astype(np.float32) - 128
    down = np.matmul(basis, x.reshape(h // 8, 8, w))  # each block's columns
    both = np.matmul(down.reshape(h // 8, size, w // 8, 8), basis.T)  # and its rows
    return both.transpose(0, 2, 1, 3).reshape(h // 8, w // 8, size * size)


def _low(plane: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The DCT coefficients of the ``chosen`` natural indices (all within u, v < 6), float32,
    computed a band of block rows at a time (a 100 MP plane needs no 1 GB of temporaries)."""
    rows, cols = plane.shape[0] // 8, plane.shape[1] // 8
    index = (chosen // 8) * 6 + chosen % 8
    out = np.empty((rows, cols, len(chosen)), dtype=np.float32)
    for top in range(0, rows, _BAND):
        bottom = min(rows, top + _BAND)
        out[top:bottom] = _dct(plane[top * 8 : bottom * 8], 6)[:, :, index]
    return out


def _strips(plane: np.ndarray, most: int) -> np.ndarray:
    """Every k-th row of 8 x 8 blocks, stacked, so that at most ``most`` blocks remain."""
    rows = plane.shape[0] // 8
    stride = max(1, -(-rows * (plane.shape[1] // 8) // most))
    if stride == 1:
        return plane
    w = plane.shape[1]
    return plane[: rows * 8].reshape(rows, 8, w)[::stride].reshape(-1, w)


def dct_blocks(luma: JpegLuma) -> np.ndarray:
    """The quantised luma DCT coefficients, (rows, cols, 64) int32, natural order."""
    return np.rint(_dct(luma.plane) / luma.table.reshape(64)).astype(np.int32)


@dataclass(frozen=True)
class DoubleJpeg:
    """What the coefficients say. ``llr``: per 8 x 8 block, log p(single) / p(double) summed
    over the frequencies that show double compression (0 where none do, or the block's
    coefficients are all zero); ``primary``: per frequency used, (natural index, q1, q2);
    ``quality``: the IJG quality whose table fits the estimated q1s best (None if they fit
    none within one step), ``last_quality`` the same for the file's own table."""

    llr: np.ndarray
    primary: tuple[tuple[int, int, int], ...]
    quality: int | None
    last_quality: int | None

    @property
    def double(self) -> bool:
        """Whether the image as a whole shows double compression (two frequencies or more)."""
        return len(self.primary) >= 2


def _weights(q1: int, q2: int, bound: int) -> np.ndarray:
    """q1 n(k) / q2 for k in -bound..bound, where n(k) is the expected number of multiples of
    q1 that land on k at step q2 after the first decoder's rounding (mean 1 over k)."""
    from scipy.special import ndtr  # not at import: the CLI's quick commands need no SciPy

    k = np.arange(-bound, bound + 1)
    width = int(np.ceil(2 * q2 / q1)) + 4
    first = np.floor((k - 1) * q2 / q1).astype(np.int64) - 1
    centre = (first[:, None] + np.arange(width)[None, :]) * (q1 / q2)
    upper = (k[:, None] + 0.5 - centre) / _ROUNDING
    lower = (k[:, None] - 0.5 - centre) / _ROUNDING
    n = (ndtr(upper) - ndtr(lower)).sum(axis=1)
    w: np.ndarray = np.maximum(n * q1 / q2, 1e-3)
    return w


def _fit_frequency(
    values: np.ndarray, calibration: np.ndarray, q2: int
) -> tuple[int, np.ndarray] | None:
    """(q1, log L for each value in -K..K) for one frequency, or None when a single compression
    explains the histogram as well. ``calibration``: the same frequency's unquantised
    coefficients on a grid shifted by 4 pixels, in steps of q2 (the estimate of p1, free of
    the grid's quantisation). Values beyond K (the far tail) are left out."""
    nonzero = values[values != 0]
    if nonzero.size < _MIN_NONZERO:
        return None
    bound = int(min(np.percentile(np.abs(nonzero), 99), _MAX_K))
    if bound < 2:
        return None
    k = np.arange(-bound, bound + 1)
    inside = nonzero[np.abs(nonzero) <= bound]
    hist = np.bincount(inside + bound, minlength=k.size).astype(np.float64)
    used = hist.sum()
    shifted = np.rint(calibration).astype(np.int64)
    shifted = shifted[(shifted != 0) & (np.abs(shifted) <= bound)]
    p1 = _smooth(np.bincount(shifted + bound, minlength=k.size).astype(np.float64), 1.0) + 1e-9
    p1[bound] = 0.0
    p1 /= p1.sum()
    candidates, weights = _weight_matrix(q2, bound)
    if not candidates:
        return None
    mix = _ALPHAS[:, None, None] + (1 - _ALPHAS[:, None, None]) * weights[None]
    gains = np.log(mix) @ hist - used * np.log(mix @ p1)  # (alphas, candidates)
    best = np.unravel_index(int(np.argmax(gains)), gains.shape)
    if gains[best] < _MIN_GAIN * used:
        return None
    q1 = candidates[best[1]]
    return q1, np.clip(-np.log(weights[best[1]]), -_CLIP, _CLIP)


@lru_cache(maxsize=1024)
def _weight_matrix(q2: int, bound: int) -> tuple[tuple[int, ...], np.ndarray]:
    """The candidate first steps for a last step q2, and their weights (candidates x 2K+1).
    A candidate must repeat its modulation three times within the histogram to be seen, and a
    divisor of q2 (q2 itself included) leaves no trace: n(k) is constant."""
    candidates = tuple(q1 for q1 in range(1, min(_MAX_Q1, bound * q2 // 3) + 1) if q2 % q1)
    if not candidates:
        return (), np.zeros((0, 2 * bound + 1))
    weights = np.stack([_weights(q1, q2, bound) for q1 in candidates])
    weights.setflags(write=False)
    return candidates, weights


def _smooth(hist: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(np.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    full = np.convolve(hist, kernel / kernel.sum(), mode="full")
    return full[radius : radius + hist.size]


def _quality_of(indices: list[int], steps: list[int]) -> int | None:
    if not indices:
        return None
    tables = np.stack([ijg_table(q) for q in range(1, 101)])[:, indices]
    misfit = np.abs(tables - np.array(steps)[None, :]).max(axis=1)
    best = int(np.argmin(misfit))
    return best + 1 if misfit[best] <= 1 else None


def _result(
    llr: np.ndarray, primary: list[tuple[int, int, int]], last_quality: int | None
) -> DoubleJpeg:
    """The analysis's answer, the first quality read from the steps found."""
    used = [p[0] for p in primary]
    quality = _quality_of(used, [p[1] for p in primary])
    return DoubleJpeg(llr, tuple(primary), quality, last_quality)


def aligned_double_jpeg(luma: JpegLuma) -> DoubleJpeg:
    """The A-DJPG analysis of a JPEG's luma (see the module docstring)."""
    chosen = _ZIGZAG[1 : FREQUENCIES + 1]
    table = luma.table.reshape(64)
    steps = table[chosen].astype(np.float32)
    coef = np.rint(_low(luma.plane, chosen) / steps).astype(np.int32)
    # p1 is a histogram: a sample of blocks does (the shifted grid's rows, 50,000 blocks at most)
    calibration = _low(_strips(luma.plane[4:, 4:], _CALIBRATION_BLOCKS), chosen) / steps
    llr = np.zeros(coef.shape[:2], dtype=np.float32)
    primary: list[tuple[int, int, int]] = []
    for i, index in enumerate(chosen):
        values = coef[:, :, i]
        q2 = int(table[index])
        fitted = _fit_frequency(values.ravel(), calibration[:, :, i].ravel(), q2)
        if fitted is None:
            continue
        q1, log_l = fitted
        bound = (log_l.size - 1) // 2
        log_l = np.concatenate([log_l, [0.0]]).astype(np.float32)
        log_l[bound] = 0.0  # a zero coefficient, and (last entry) one beyond the range: no say
        llr += log_l[np.where(np.abs(values) <= bound, values + bound, -1)]
        primary.append((int(index), q1, q2))
    return _result(llr, primary, _quality_of(list(range(64)), table.tolist()))


def earlier_jpeg(plane: np.ndarray) -> DoubleJpeg:
    """JPEG traces in a losslessly stored picture (PNG, TIFF, lossless WebP), block by block.

    A picture decoded from a JPEG and saved losslessly keeps, on the original 8 x 8 grid, DCT
    coefficients close to multiples of the quantisation steps (Fan & de Queiroz, "Identification
    of bitmap compression history: JPEG detection and quantizer estimation", IEEE Trans. Image
    Process. 12(2), 2003). Per frequency, the step q is the largest whose periodicity
    E[cos(2 pi c / q)] is strong; per coefficient, log p(not quantised) / p(quantised at q) is
    log(1/q) - log N(c - q round(c/q); 0, s) with s from the same periodicity. A region pasted
    in (from another grid or no JPEG at all), inpainted or moved by other than a multiple of 8
    pixels shows no quantisation: positive log-odds. ``plane``: the luma (float, 0-255) at the
    file's own size; ``quality`` is the IJG quality that fits the steps found.
    """
    chosen = _ZIGZAG[1 : FREQUENCIES + 1]
    coef = _low(plane, chosen)
    llr = np.zeros(coef.shape[:2], dtype=np.float32)
    primary: list[tuple[int, int, int]] = []
    steps = np.arange(2, _MAX_Q1 + 1, dtype=np.float32)
    for i, index in enumerate(chosen):
        values = coef[:, :, i]
        flat = values.ravel()
        big = flat[np.abs(flat) > 1.0]
        if big.size < _MIN_NONZERO:
            continue
        sample = big[:: max(1, big.size // 20000)]
        # over the coefficients at least one step from zero: near zero every step fits
        away = np.abs(sample)[None, :] >= steps[:, None]
        cosine = np.where(away, np.cos(2 * np.pi * sample[None, :] / steps[:, None]), 0.0)
        counts = away.sum(axis=1)
        strength = np.where(counts >= 200, cosine.sum(axis=1) / np.maximum(counts, 1), 0.0)
        strong = np.nonzero(strength >= max(_PERIODIC, 0.8 * float(strength.max())))[0]
        if strong.size == 0:
            continue
        q = float(steps[strong[-1]])
        spread = float(
            np.sqrt(-np.log(max(float(strength[strong[-1]]), 1e-3)) * q * q / (2 * np.pi**2))
        )
        spread = min(max(spread, 0.3), q / 4)
        residual = values - q * np.rint(values / q)
        log_quantised = -0.5 * (residual / spread) ** 2 - np.log(spread * np.sqrt(2 * np.pi))
        log_l = np.clip(-np.log(q) - log_quantised, -_CLIP, _CLIP)
        # a coefficient that rounds to zero says little either way
        llr += np.where(np.abs(values) > q / 2, log_l, 0.0).astype(np.float32)
        primary.append((int(index), int(q), 1))
    return _result(llr, primary, None)
