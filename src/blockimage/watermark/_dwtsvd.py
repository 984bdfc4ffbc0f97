"""The embedding domain: singular values of mean-removed blocks of the DWT LL sub-band.

1. Luma is resampled to a canonical C x C grid (antialiased bilinear), so the mark lives at a
   fixed fraction of the picture whatever its resolution; the extractor resamples a suspect
   image the same way, which undoes resizing.
2. A 2-D Haar DWT (PyWavelets) of the canonical luma; the LL sub-band is cut into b x b blocks.
3. Each block's mean is removed (a brightness shift only moves the mean) and its largest singular
   value s1 is quantised (dither modulation, Chen & Wornell 2001) onto one of two interleaved
   lattices of step ``step`` with a keyed dither: lattice 0 at (k + d) * step, lattice 1 at
   (k + d + 1/2) * step. Only s1 changes: the block changes by (s1' - s1) * u1 v1^T.
4. The change is brought back to the image by the inverse DWT and a resampling of the
   difference to the image's size.

Extraction returns, per block, cos(2 pi phase) of s1 / step against the dither: +1 on lattice
0, -1 on lattice 1. Contrast scales s1; the caller searches a small set of gains.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import pywt
from scipy import sparse

__all__ = [
    "Domain",
    "analyse",
    "strengths",
    "apply_qim",
    "largest_singular_triplet",
    "largest_singular_value",
]


@dataclass(frozen=True)
class Domain:
    """The canonical-domain decomposition of one image's luma."""

    canonical: np.ndarray  # C x C float32 luma
    coeffs: list  # pywt wavedec2 output
    blocks: np.ndarray  # N x b x b mean-removed LL blocks
    means: np.ndarray  # N block means
    u1: np.ndarray  # N x b
    s1: np.ndarray  # N
    v1: np.ndarray  # N x b


def resample(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Antialiased bilinear resampling of a float32 plane: Pillow's BILINEAR filter ('F' mode),
    to within 1e-4 grey levels, without Pillow's copies in and out.

    Enlarging both ways it is plain bilinear interpolation between pixel centres (OpenCV);
    otherwise the triangle filter is applied as two sparse matrices, rows then columns (at
    12 MP to 512 x 512: 27 ms, Pillow 58)."""
    if plane.shape == (height, width):
        return plane.astype(np.float32, copy=False)
    plane = np.ascontiguousarray(plane, dtype=np.float32)
    if width >= plane.shape[1] and height >= plane.shape[0]:
        return cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR)
    rows = _triangle(plane.shape[0], height) @ plane
    return np.ascontiguousarray((_triangle(plane.shape[1], width) @ rows.T).T, dtype=np.float32)


@functools.lru_cache(maxsize=32)
def _triangle(n_in: int, n_out: int) -> sparse.csr_matrix:
    """The n_out x n_in weights of Pillow's bilinear resampling along one axis (its
    ``precompute_coeffs``: a triangle stretched by the reduction, each row normalised)."""
    scale = n_in / n_out
    support = max(scale, 1.0)  # the triangle's half-width, in input pixels
    centre = (np.arange(n_out) + 0.5) * scale
    first = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    stop = np.minimum((centre + support + 0.5).astype(np.int64), n_in)
    taps = first[:, None] + np.arange(int((stop - first).max()))[None, :]
    weight = np.maximum(1.0 - np.abs((taps - centre[:, None] + 0.5) / support), 0.0)
    weight[taps >= stop[:, None]] = 0.0
    weight /= weight.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(n_out), taps.shape[1])
    matrix = sparse.csr_matrix(
        (weight.ravel().astype(np.float32), (rows, np.minimum(taps, n_in - 1).ravel())),
        shape=(n_out, n_in),
    )
    matrix.sum_duplicates()
    return matrix


def _blocks(ll: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean-removed blocks N x b x b, block means) of an LL sub-band."""
    n = ll.shape[0] // block
    blocks = ll[: n * block, : n * block].reshape(n, block, n, block).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(n * n, block, block)
    means = blocks.mean(axis=(1, 2))
    return blocks - means[:, None, None], means


def analyse(luma: np.ndarray, *, canonical: int, level: int, block: int, wavelet: str) -> Domain:
    """Decompose ``luma`` (H x W float32) into the embedding domain."""
    canon = resample(luma, canonical, canonical)
    coeffs = pywt.wavedec2(canon, wavelet, level=level, mode="periodization")
    centred, means = _blocks(coeffs[0], block)
    u1, s1, v1 = largest_singular_triplet(centred)
    return Domain(canon, coeffs, centred, means, u1, s1, v1)


def strengths(
    luma: np.ndarray, *, canonical: int, level: int, block: int, wavelet: str
) -> np.ndarray:
    """The s1 of every block of ``luma``'s embedding domain: all that reading the mark needs.
    (The LL band of a one-level Haar transform is half the sum of each 2 x 2 square: computed
    so, it costs a tenth of PyWavelets' full transform.)"""
    canon = resample(luma, canonical, canonical)
    if wavelet == "haar" and level == 1 and canonical % 2 == 0:
        half = canonical // 2
        ll = 0.5 * canon.reshape(half, 2, half, 2).sum(axis=(1, 3))
    else:
        ll = pywt.wavedec2(canon, wavelet, level=level, mode="periodization")[0]
    centred, _ = _blocks(ll, block)
    return largest_singular_value(centred)


def _top_eigenvector(blocks: np.ndarray, squarings: int) -> tuple[np.ndarray, np.ndarray]:
    """(top unit eigenvector of each B^T B (N x b, float64), B^T B's largest eigenvalue (N)),
    by repeated squaring: (B^T B)^(2^squarings), normalised by its trace at each step, has
    every column along the top eigenvector; the longest is taken, and the eigenvalue is its
    Rayleigh quotient (which errs by the square of the vector's error). The b x b products
    run as b(b+1)/2 arrays of N entries (the matrices are symmetric), about half the time of
    N small matrix products: for 4096 blocks of 4 x 4 the whole takes ~5 ms, ``eigh`` 16."""
    b = blocks.astype(np.float64)
    k = b.shape[2]
    upper = [(i, j) for i in range(k) for j in range(i, k)]
    columns = [np.ascontiguousarray(b[:, :, j]) for j in range(k)]
    gram = _mirrored({(i, j): np.einsum("ni,ni->n", columns[i], columns[j]) for i, j in upper})
    power = gram
    for _ in range(squarings):
        square = {(i, j): sum(power[i, m] * power[m, j] for m in range(k)) for i, j in upper}
        trace = np.maximum(sum(square[i, i] for i in range(k)), 1e-300)
        power = _mirrored({ij: value / trace for ij, value in square.items()})
    stacked = np.stack([[power[i, j] for j in range(k)] for i in range(k)])  # k x k x N
    column = np.argmax(np.einsum("ijn,ijn->jn", stacked, stacked), axis=0)
    v = stacked[:, column, np.arange(len(b))]  # k x N
    norm = np.sqrt(np.einsum("in,in->n", v, v))
    zero = norm < 1e-150  # a block of zeros: any unit vector
    v[:, zero] = np.eye(k)[:, :1]
    v /= np.where(zero, 1.0, norm)
    grams = np.stack([[gram[i, j] for j in range(k)] for i in range(k)])
    return v.T, np.einsum("in,ijn,jn->n", v, grams, v)


def _mirrored(upper: dict[tuple[int, int], np.ndarray]) -> dict[tuple[int, int], np.ndarray]:
    """A symmetric matrix's entries (i, j), given those with i <= j."""
    return upper | {(j, i): value for (i, j), value in upper.items()}


def largest_singular_value(blocks: np.ndarray, squarings: int = 8) -> np.ndarray:
    """s1 of each of N small matrices, without the vectors (:func:`_top_eigenvector`); within
    1e-4 of the SVD's s1 even where the two largest nearly tie, i.e. within 1e-5 of a lattice
    step."""
    _, top = _top_eigenvector(blocks, squarings)
    return np.sqrt(np.maximum(top, 0.0)).astype(blocks.dtype)


def largest_singular_triplet(blocks: np.ndarray, squarings: int = 10) -> tuple[np.ndarray, ...]:
    """(u1, s1, v1) of each of N small matrices: the largest singular value and its vectors.

    v1 is the top eigenvector of B^T B (:func:`_top_eigenvector`, two squarings more than the
    reader's s1, so that the rank-1 part u1 v1^T is right to 1e-3 where s1 > 1.01 s2), u1 is
    B v1 / s1. s1 agrees with the SVD's to ~1e-6 (where s1 = s2 the vectors are any pair of
    the tied ones, as with the SVD). A block of zeros gets s1 = 0 and unit vectors along the
    first axis."""
    b = blocks.astype(np.float64)
    v1, top = _top_eigenvector(b, squarings)
    s1 = np.sqrt(np.maximum(top, 0.0))
    u1 = np.einsum("nij,nj->ni", b, v1)
    nonzero = s1 > 1e-9
    u1[nonzero] /= s1[nonzero, None]
    u1[~nonzero] = np.eye(b.shape[1])[0]
    return u1.astype(blocks.dtype), s1.astype(blocks.dtype), v1.astype(blocks.dtype)


def _smooth_direction(b: int) -> np.ndarray:
    """The smoothest zero-mean unit rank-1 pattern of a b x b block: DCT-II basis 1 x basis 1."""
    n = np.arange(b)
    basis = np.cos(np.pi * (2 * n + 1) / (2 * b))
    basis /= np.linalg.norm(basis)
    return np.outer(basis, basis)


def apply_qim(
    dom: Domain,
    bits: np.ndarray,
    dither: np.ndarray,
    step: np.ndarray | float,
    margin: np.ndarray,
    flat: np.ndarray,
    wavelet: str,
) -> np.ndarray:
    """Move each block's s1 into the decision region of its bit; return the canonical change.

    ``bits`` (N, 0/1); ``dither`` (N, in [0, 1)); ``margin`` (N, in (0, 1/4]): how deep inside
    the decision region (|s1/step - lattice point| < 1/4) s1 must end, 1/4 meaning on the lattice
    point itself (full dither modulation), smaller values a minimal move for blocks where a
    change would show; ``flat`` (N, bool): blocks whose own rank-1 direction is noise, where the
    rank-1 part is replaced by a smooth pattern (s1 does not depend on the direction).
    """
    offset = dither + 0.5 * bits
    u = dom.s1 / step
    limit = 0.25 - margin
    # The nearest point of the bit's decision regions [p - limit, p + limit] (p on the bit's
    # lattice) that is non-negative, since a singular value cannot be negative.
    nearest = np.round(u - offset) + offset
    best = np.full_like(u, np.inf)
    target = u.copy()
    for shift in (-1.0, 0.0, 1.0):
        p = nearest + shift
        lo, hi = np.maximum(p - limit, 0.0), p + limit
        candidate = np.clip(u, lo, hi)
        distance = np.where(hi >= 0, np.abs(candidate - u), np.inf)
        better = distance < best
        best = np.where(better, distance, best)
        target = np.where(better, candidate, target)
    target = target * step
    b = dom.blocks.shape[1]
    n = int(np.sqrt(dom.blocks.shape[0]))
    rank1 = dom.u1[:, :, None] * dom.v1[:, None, :]
    change = (target - dom.s1)[:, None, None] * rank1
    smooth = target[:, None, None] * _smooth_direction(b) - dom.s1[:, None, None] * rank1
    delta_blocks = np.where(flat[:, None, None], smooth, change)
    ll_delta = np.zeros_like(dom.coeffs[0])
    ll_delta[: n * b, : n * b] = (
        delta_blocks.reshape(n, n, b, b).transpose(0, 2, 1, 3).reshape(n * b, n * b)
    )
    zero_details = [tuple(np.zeros_like(d) for d in detail) for detail in dom.coeffs[1:]]
    return pywt.waverec2([ll_delta, *zero_details], wavelet, mode="periodization").astype(
        np.float32
    )
