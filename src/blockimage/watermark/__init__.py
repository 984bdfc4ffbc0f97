"""Keyed, blind, robust image watermark: DWT -> LL sub-band -> block SVD -> dither modulation.

``embed(rgb, payload, key)`` hides a 64-bit payload in an image; ``extract(rgb, key)`` finds it
again, or returns None — never a wrong payload (see :mod:`._payload` for the false-positive
bound). Pure functions on arrays; no I/O.

The scheme (details in :mod:`._dwtsvd` and :mod:`._payload`):

- payload -> CRC-16 -> BCH(t=10) -> 156 coded bits, whitened with a keyed sequence;
- luma resampled to a canonical 512 x 512 grid, Haar DWT, LL sub-band cut in blocks; every
  block carries one coded bit (a keyed permutation spreads each bit over ~25 blocks across the
  picture); the bit is set by quantising the largest singular value of the mean-removed block
  onto one of two keyed lattices;
- the canonical-domain change is resampled to the image size and added to R, G and B alike
  (luma only: colours keep their chroma);
- the strength adapts to the picture: weaker where blocks are flat, and globally lowered
  until PSNR >= 40 dB;
- extraction resamples the suspect to the canonical grid, sums soft decisions per bit, and
  tries a ladder of lattice gains (contrast changes scale singular values) until the BCH code
  and the CRC accept a payload;
- a second, weak component makes a crop or a rotation readable (:mod:`._sync`): a keyed
  template of stripes repeated every 64 canonical pixels, added before the mark. When the
  plain extraction finds nothing, the template's repetition is searched for in the suspect
  (angle and period per axis, then the offset of the keyed sequences); it says where the
  canonical grid lies in the suspect, modulo one repetition, and each placement that keeps the
  suspect inside the frame is drawn back onto the grid, refined to a fraction of a pixel from
  the template there, and decoded, the blocks the suspect does not cover left out.

References: Chen & Wornell, "Quantization index modulation", IEEE Trans. Inf. Theory 2001;
Liu & Tan, "An SVD-based watermarking scheme for protecting rightful ownership", IEEE Trans.
Multimedia 2002 (SVD of the LL sub-band); Kutter, "Watermarking resisting to translation,
rotation, and scaling", SPIE 3528, 1998 (a repeated pattern for synchronisation).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..errors import BlockImageError
from ..quality import psnr
from . import _dwtsvd, _payload, _sync
from ._payload import CODED_BITS

__all__ = [
    "canonical_luma",
    "embed",
    "extract",
    "extract_details",
    "coded_bits",
    "Extraction",
    "WatermarkCapacityError",
    "MIN_SIDE",
    "CODED_BITS",
    "Params",
    "DEFAULT_PARAMS",
]

MIN_SIDE = 256
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class WatermarkCapacityError(BlockImageError, ValueError):
    """The image is too small to carry the payload robustly."""


@dataclass(frozen=True)
class Params:
    canonical: int = 512
    wavelet: str = "haar"
    level: int = 1
    block: int = 4
    step: float = 35.0  # lattice step of s1 at gain 1 (LL units of an orthonormal Haar DWT)
    texture_knee: float = 0.6  # blocks with texture norm >= knee * step: full dither modulation
    min_strength: float = 0.2  # in flat blocks, s1 ends >= min_strength/4 steps inside its region
    flat_below: float = 0.15  # blocks with texture norm < flat_below * step count as flat
    min_psnr: float = 41.0
    gains: tuple[float, ...] = (1.0, 0.85, 0.72, 0.61, 0.52)  # embed-time strength ladder
    search_lo: float = 0.40  # extraction gain search range (covers ladder x contrast change)
    search_hi: float = 1.45
    search_ratio: float = 1.012
    sync_strength: float = 0.75  # the template's cells, in grey levels (0: no template)


DEFAULT_PARAMS = Params()


@dataclass(frozen=True)
class Extraction:
    payload: int | None
    confidence: float  # mean agreement of block decisions with the decoded codeword, 0..1
    bits_ok: float  # fraction of coded bits right before error correction (0 if not found)
    gain: float | None
    bits: np.ndarray | None = None  # the hard coded bits read (before error correction)


def coded_bits(payload: int, key: bytes) -> np.ndarray:
    """The coded bit vector (CODED_BITS of 0/1) that :func:`embed` writes for ``payload``."""
    return _payload.encode_payload(payload, key)


_ROWS = 256  # rows per chunk: a float copy of a whole 24 MP photo would be 290 MB


def _luma(rgb: np.ndarray) -> np.ndarray:
    """The float32 luma plane, computed a band of rows at a time."""
    if rgb.shape[2] == 1:
        return rgb[:, :, 0].astype(np.float32)
    luma = np.empty(rgb.shape[:2], dtype=np.float32)
    for top in range(0, rgb.shape[0], _ROWS):
        luma[top : top + _ROWS] = rgb[top : top + _ROWS].astype(np.float32) @ _LUMA
    return luma


def canonical_luma(image: np.ndarray, *, params: Params = DEFAULT_PARAMS) -> np.ndarray:
    """The image's luma on the canonical grid: where embedding and the plain reading both
    start. A caller that does both on one image (registration's duplicate check, then the
    embedding) makes it once and passes it to each as ``canonical``."""
    rgb, _ = _as_rgb(image)
    return _dwtsvd.resample(_luma(rgb), params.canonical, params.canonical)


def _checked_canonical(canonical: np.ndarray, params: Params) -> np.ndarray:
    if canonical.shape != (params.canonical, params.canonical):
        raise ValueError(f"canonical luma must be {params.canonical} x {params.canonical}")
    return canonical


def _add_luma(rgb: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``rgb`` plus the luma change ``delta`` on every channel, rounded (half to even, as
    np.rint) and clipped to uint8: OpenCV adds the float change to the uint8 band and
    saturates in one pass, written straight into the result, a band of rows at a time."""
    out = np.empty_like(rgb)
    for top in range(0, rgb.shape[0], _ROWS):
        step = delta[top : top + _ROWS]
        change = cv2.merge([step] * rgb.shape[2]) if rgb.shape[2] > 1 else step
        band = rgb[top : top + _ROWS]
        cv2.add(band, change.reshape(band.shape), dst=out[top : top + _ROWS], dtype=cv2.CV_8U)
    return out


def _grid(params: Params) -> dict[str, Any]:
    """The embedding domain's shape, as :mod:`._dwtsvd` takes it."""
    return {"canonical": params.canonical, "level": params.level, "block": params.block,
            "wavelet": params.wavelet}  # fmt: skip


def _analyse(luma: np.ndarray, params: Params) -> _dwtsvd.Domain:
    return _dwtsvd.analyse(luma, **_grid(params))


def _strengths(luma: np.ndarray, params: Params) -> np.ndarray:
    return _dwtsvd.strengths(luma, **_grid(params))


def _as_rgb(image: np.ndarray) -> tuple[np.ndarray, bool]:
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return image[:, :, None], True
    if image.ndim == 3 and image.shape[2] in (1, 3):
        return image, image.shape[2] == 1
    raise ValueError(f"expected H x W or H x W x 3, got shape {image.shape}")


@functools.lru_cache(maxsize=16)
def _layout(key: bytes, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Keyed assignment of blocks to coded bits, and each block's dither in [0, 1) (read-only:
    shared by every call with this key)."""
    order = _payload.keyed_rng(key, "permute").permutation(n_blocks)
    bit_of_block = np.empty(n_blocks, dtype=np.intp)
    bit_of_block[order] = np.arange(n_blocks) % CODED_BITS
    dither = _payload.keyed_rng(key, "dither").random(n_blocks)
    bit_of_block.flags.writeable = False
    dither.flags.writeable = False
    return bit_of_block, dither


def _texture(dom: _dwtsvd.Domain) -> np.ndarray:
    """Frobenius norm of each centred block: how much structure there is to hide a change in."""
    return np.sqrt((dom.blocks**2).sum(axis=(1, 2)))


def _block_margin(texture: np.ndarray, params: Params) -> np.ndarray:
    """Perceptual cap per block, as the depth (0..1/4 step) s1 must reach inside its region."""
    strength = np.clip(texture / (params.texture_knee * params.step), params.min_strength, 1.0)
    return 0.25 * strength


def _sync_template(texture: np.ndarray, key: bytes, params: Params) -> np.ndarray:
    """The synchronisation template on the canonical grid, at full strength where the picture
    has texture to hide it in and down to about a third of it on flat areas (a sky, a wall),
    where a faint regular pattern would show."""
    side = params.block * 2**params.level  # canonical pixels per block
    n = params.canonical // side
    per_block = np.clip(texture / (params.texture_knee * params.step), 0.35, 1.0).reshape(n, n)
    mask = cv2.resize(per_block.astype(np.float32), (params.canonical, params.canonical),
                      interpolation=cv2.INTER_LINEAR)  # fmt: skip
    return params.sync_strength * mask * _sync.canvas(key, params.canonical)


def embed(
    image: np.ndarray,
    payload: int,
    key: bytes,
    *,
    params: Params = DEFAULT_PARAMS,
    canonical: np.ndarray | None = None,
) -> np.ndarray:
    """Embed a 64-bit ``payload`` keyed by ``key``; returns an image of the same shape/dtype.
    ``canonical``: the image's :func:`canonical_luma`, if the caller has it.

    Raises :class:`WatermarkCapacityError` if the short side is below 256 pixels.
    """
    rgb, grey = _as_rgb(image)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise WatermarkCapacityError(
            f"image is {w}x{h}; the watermark needs at least {MIN_SIDE} pixels on the short side"
        )
    if not key:
        raise ValueError("watermark key must not be empty")
    # (analysing a plane that is on the canonical grid already resamples nothing)
    plane = _luma(rgb) if canonical is None else _checked_canonical(canonical, params)
    dom = _analyse(plane, params)
    n = dom.s1.shape[0]
    bit_of_block, dither = _layout(key, n)
    coded = _payload.encode_payload(payload, key)
    bits = coded[bit_of_block]
    texture = _texture(dom)
    margin = _block_margin(texture, params)
    flat = texture < params.flat_below * params.step
    template = None
    if params.sync_strength > 0:
        template = _sync_template(texture, key, params)
    marked = rgb
    for gain in params.gains:
        delta_c = _dwtsvd.apply_qim(
            dom, bits, dither, params.step * gain, margin, flat, params.wavelet
        )
        if template is not None:
            delta_c = delta_c + template
        marked = _add_luma(rgb, _dwtsvd.resample(delta_c, w, h))
        if psnr(rgb, marked) >= params.min_psnr:
            break
    return marked[:, :, 0] if grey and image.ndim == 2 else marked


def extract_details(
    image: np.ndarray,
    key: bytes,
    *,
    params: Params = DEFAULT_PARAMS,
    sync: bool = True,
    canonical: np.ndarray | None = None,
) -> Extraction:
    """Find the payload in ``image``; see :class:`Extraction`. With ``sync``, an image in
    which the plain extraction finds nothing is searched for the synchronisation template
    (a crop, a rotation), which costs about 0.2-0.7 s more at 1 MP. ``canonical``: the
    image's :func:`canonical_luma`, if the caller has it."""
    rgb, _ = _as_rgb(image)
    if min(rgb.shape[:2]) < 64:
        return _NOTHING
    luma: np.ndarray | None = None  # once: the plain reading and the search both start from it
    if canonical is None:
        luma = plain = _luma(rgb)
    else:
        plain = _checked_canonical(canonical, params)
    found = _decode(_strengths(plain, params), key, params)
    if found is not None or not sync or params.sync_strength <= 0:
        return found or _NOTHING
    if luma is None:
        luma = _luma(rgb)
    for rank, placement in enumerate(_sync.locate(luma, key)):
        # A clear template earns four readings, two placements each; a faint one (what
        # unmarked pictures show by chance too) three: the work on an unmarked picture stays
        # bounded.
        if rank >= (4 if placement.z >= _CLEAR_Z else 3):
            break
        for rough in _sync.placements(placement, luma.shape, params.canonical)[:_PLACES]:
            # A search reading is good to about a canonical pixel, the decoder needs a quarter:
            # the refinement from the template in the view gets it there nearly always; the
            # rough placement is the fallback where the picture's own pattern misleads it.
            rough_view = _sync.canonical_view(luma, rough, params.canonical)
            refined = _sync.refine(*rough_view, rough, key)
            for view, coverage in (_sync.canonical_view(luma, refined, params.canonical),
                                   rough_view):  # fmt: skip
                covered = _covered_blocks(coverage, params)
                found = _decode(_strengths(view, params), key, params, covered=covered)
                if found is not None:
                    return found
    return _NOTHING


_NOTHING = Extraction(None, 0.0, 0.0, None)
_CLEAR_Z = 8.0  # a template this clear is seldom seen by chance (unmarked pictures: < 8)
_GAINS_AT_ONCE = 12  # lattice gains decided in one pass (the first few nearly always do)
_PLACES = 2  # placements tried per reading, nearest to the frame's centre first


def _covered_blocks(coverage: np.ndarray, params: Params) -> np.ndarray:
    """Which blocks of the canonical grid the suspect covers whole (as the block order of
    :func:`._dwtsvd.analyse`)."""
    side = params.block * 2**params.level  # canonical pixels per block
    n = params.canonical // side
    cells = coverage[: n * side, : n * side].reshape(n, side, n, side)
    return (cells.min(axis=(1, 3)) > 0.99).ravel()


def _decode(
    s1: np.ndarray, key: bytes, params: Params, covered: np.ndarray | None = None
) -> Extraction | None:
    """The payload the blocks' singular values ``s1`` carry, trying the ladder of gains; blocks
    not ``covered`` (by a cropped suspect) count for nothing."""
    bit_of_block, dither = _layout(key, s1.shape[0])
    weight = np.ones(s1.shape[0], np.float32) if covered is None else covered.astype(np.float32)
    ladder = _gain_ladder(params)
    order = np.argsort(bit_of_block, kind="stable")  # blocks sorted by the bit they carry
    starts = np.searchsorted(bit_of_block[order], np.arange(CODED_BITS))
    ratio = (s1 / params.step)[order].astype(np.float32)
    offset, weight = dither[order].astype(np.float32), weight[order]
    for first in range(0, len(ladder), _GAINS_AT_ONCE):
        gains = np.array(ladder[first : first + _GAINS_AT_ONCE], np.float32)
        # these gains' block decisions at once, summed per coded bit
        phases = np.cos(np.float32(2 * np.pi) * (ratio / gains[:, None] - offset))
        phases *= weight
        soft = np.add.reduceat(phases, starts, axis=1)
        for i, gain in enumerate(gains):
            hard = (soft[i] < 0).astype(np.uint8)
            payload, _ = _payload.decode_bits(hard, key)
            if payload is None:
                continue
            sent = _payload.encode_payload(payload, key)
            agree = np.where(sent[bit_of_block[order]] == 0, phases[i], -phases[i])
            return Extraction(
                payload,
                confidence=float(np.clip(agree[weight > 0].mean(), 0.0, 1.0)),
                bits_ok=float(np.mean(hard == sent)),
                gain=float(gain),
                bits=hard,
            )
    return None


def extract(
    image: np.ndarray, key: bytes, *, params: Params = DEFAULT_PARAMS, sync: bool = True
) -> tuple[int | None, float]:
    """(payload or None, confidence in [0, 1]) of the watermark keyed by ``key``."""
    found = extract_details(image, key, params=params, sync=sync)
    return found.payload, found.confidence


def _gain_ladder(params: Params) -> list[float]:
    """Gains to try, nearest to the embed-time ladder first."""
    lo, hi, r = params.search_lo, params.search_hi, params.search_ratio
    grid = lo * r ** np.arange(int(np.log(hi / lo) / np.log(r)) + 1)
    anchors = np.log(np.array(params.gains))
    distance = np.min(np.abs(np.log(grid)[:, None] - anchors[None, :]), axis=1)
    return [float(g) for g in grid[np.argsort(distance, kind="stable")]]
