"""Geometric synchronisation: a keyed periodic template, and the search that finds it again.

The DWT-SVD mark lives on a canonical grid onto which the whole picture is resampled, so a
crop, or a rotation, moves every block of it. This second component tells the extractor where
the canonical grid lies in a suspect image, in the manner of periodic watermarks (Kutter,
"Watermarking resisting to translation, rotation, and scaling", SPIE 3528, 1998):

- embedding adds a(u) + b(v): two keyed balanced sequences of +-1 cells (``CELL`` canonical
  pixels wide), each repeated every ``TILE`` canonical pixels, one varying across the grid and
  one down it (faint stripes), at low amplitude;
- for each axis, the suspect's band-passed luma is projected along lines tilted by each angle
  searched, and every profile is folded at every period searched and correlated with the keyed
  sequence at every shift (one FFT): the best z-score gives the stripes' angle, their period in
  suspect pixels and the sequence's offset. A statistic linear in the template (folding against
  the known sequence) sees what an autocorrelation, quadratic in it, cannot at this amplitude;
- the two axes give the affine map from suspect pixels to the canonical grid, its offset known
  modulo TILE; the placements that keep the suspect inside the frame are what the decoder tries
  (the BCH code and the CRC decide, see :mod:`._payload`);
- a reading is good to about a canonical pixel, and the decoder needs a quarter of one: each
  placement is refined from the template in the suspect drawn onto the grid, the sequence's
  lag in each half of it (a cross-spectrum's phase slope) giving offset, scale and angle per
  axis; where the two axes' angles do not make one rotation, each axis's angle is also tried
  for both.

The search works on a band-passed residual divided by its local energy (not by its square
root): a matched filter's weighting, under which flat areas, where the template shows, count
and strong structure (a facade's windows) counts little.

Pure functions on arrays (OpenCV for resampling and shears, NumPy's FFT).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import _payload

__all__ = ["CELL", "TILE", "Placement", "canvas", "locate", "placements", "canonical_view"]

CELL = 2  # canonical pixels per template cell
CELLS = 32  # cells per repetition
TILE = CELL * CELLS  # canonical pixels per repetition (8 across the canonical grid)
_WORK = 1024  # the search runs on the suspect fit within this many pixels
_MIN_Z = 5.5  # each axis's folded correlation peak, in standard deviations of its shifts
_MAX_ANGLE = 3.0  # degrees of rotation searched, either way
_MAX_CROP = 0.45  # the search covers suspects down to 1 - _MAX_CROP of the frame per axis
_ROWS = 4  # rows summed before the shear of a profile
_SLOW = 6.0  # profile samples: the high-pass that removes a picture's slow swells


@dataclass(frozen=True)
class Placement:
    """Where a suspect lies on the canonical grid: canonical = ``matrix`` @ (x, y, 1), in
    continuous coordinates (pixel x covers [x, x + 1), in the suspect and on the canonical
    grid alike), known modulo TILE; ``z`` how clearly the template was seen (the weaker
    axis)."""

    matrix: np.ndarray  # 2 x 3
    z: float


def sequences(key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The two keyed balanced +-1 sequences of CELLS cells: along u, and along v."""
    rng = _payload.keyed_rng(key, "sync")
    base = np.array([1.0] * (CELLS // 2) + [-1.0] * (CELLS // 2), dtype=np.float32)
    return rng.permutation(base), rng.permutation(base)


def canvas(key: bytes, size: int) -> np.ndarray:
    """The template over a size x size canonical grid: a(u) + b(v), each a keyed sequence of
    +-1 cells repeated every TILE canonical pixels (stripes across, and stripes down)."""
    a, b = sequences(key)
    cells = np.arange(size) // CELL % CELLS
    return (a[cells][None, :] + b[cells][:, None]).astype(np.float32)


def _residual(luma: np.ndarray) -> np.ndarray:
    """Band-passed, locally normalised luma: the template's scale kept, picture content and
    strong edges flattened."""
    fine = cv2.GaussianBlur(luma, (0, 0), 0.8)
    coarse = cv2.GaussianBlur(luma, (0, 0), 4.0)
    band = fine - coarse
    energy = cv2.GaussianBlur(band * band, (0, 0), 8.0)
    return band / (energy + 1.0)


def _profiles(r: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """For each angle t (degrees), the mean of ``r`` along lines tilted by t from the vertical:
    profile[pad + x'] over the lines x = x' + y tan(t). Returns (profiles, usable, pad).

    Rows are first summed in groups of _ROWS (over which a line moves by less than a fifth of a
    pixel at the largest angle), then sheared."""
    h, w = r.shape
    groups = h // _ROWS
    stacked = r[: groups * _ROWS].reshape(groups, _ROWS, w).sum(axis=1)
    tangents = np.tan(np.deg2rad(angles))
    pad = int(np.ceil(h * np.abs(tangents).max())) + 1
    width = w + 2 * pad
    out = np.zeros((len(angles), width), np.float32)
    counts = np.zeros_like(out)
    # group g holds rows g*_ROWS ...: its middle row y_g = _ROWS g + c; line x' meets it at
    # x = x' + y_g tan(t), inside the picture for the g between two bounds
    c = (_ROWS - 1) / 2.0
    columns = np.arange(width, dtype=np.float64) - pad
    for i, t in enumerate(tangents):
        shear = np.array([[1, -t * _ROWS, pad - t * c], [0, 1, 0]], dtype=np.float32)
        moved = cv2.warpAffine(stacked, shear, (width, groups), flags=cv2.INTER_LINEAR)
        out[i] = moved.sum(axis=0)
        if abs(t) < 1e-12:
            inside = ((columns >= 0) & (columns <= w - 1)) * groups
        else:
            ends = np.sort(np.stack([-columns / t, (w - 1 - columns) / t]), axis=0)
            first = np.maximum(np.ceil((ends[0] - c) / _ROWS), 0)
            last = np.minimum(np.floor((ends[1] - c) / _ROWS), groups - 1)
            inside = np.maximum(last - first + 1, 0)
        counts[i] = _ROWS * inside
    keep = counts > 0.25 * h  # lines that cross a quarter of the picture at least
    profiles = np.where(keep, out / np.maximum(counts, 1.0), 0.0).astype(np.float32)
    # The picture's own part of a profile: slow swells (removed by a high-pass at several
    # cells) and the spikes of long straight edges (clipped at 3 robust deviations).
    slow = cv2.GaussianBlur(profiles, (0, 0), sigmaX=_SLOW, sigmaY=0.01)
    profiles = np.where(keep, profiles - slow, 0.0)
    for row, usable in zip(profiles, keep, strict=True):
        spread = 1.4826 * float(np.median(np.abs(row[usable]))) + 1e-9
        np.clip(row, -3 * spread, 3 * spread, out=row)
    return profiles, keep, pad


def _fold_scores(
    profile: np.ndarray,
    keep: np.ndarray,
    pad: int,
    periods: np.ndarray,
    seq: np.ndarray,
    angle: float,
    per_cell: int = 4,
    spacing: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """For each period (profile samples per repetition): the z-score of the best circular
    shift of ``seq`` against the profile folded onto CELLS * ``per_cell`` bins, and that shift
    in cells, to a fraction of one (bins of a quarter cell keep the fold sharp whatever the
    sub-cell phase).

    The z-score is the correlation over its standard deviation under "no template": the
    spread of the samples within their bins, their count per bin, and the profile's own
    correlation between neighbouring samples (an effective sample size). ``spacing``: the
    profile's samples are means of that many of :func:`_profiles`' (periods stay in those)."""
    # profile sample i is the line through pixel centre (i - pad, 0): in continuous coordinates
    # (pixel x covers [x, x + 1)) the line x_c - y_c tan(angle) = i - pad + (1 - tan(angle)) / 2
    if int(keep.sum()) <= 2 * CELLS * per_cell:  # a sliver: too few samples to fold
        return np.zeros(len(periods)), np.zeros(len(periods))
    first = np.flatnonzero(keep) * spacing + (spacing - 1) / 2
    x = first - pad + 0.5 * (1.0 - np.tan(np.deg2rad(angle)))
    values = profile[keep].astype(np.float64)
    values = values - values.mean()
    n, m = len(periods), CELLS * per_cell
    # the bin of every sample for every period, as one flat index (float32 is exact enough:
    # phases to 1e-4 of a repetition)
    phase = x.astype(np.float32)[None, :] * (m / periods.astype(np.float32))[:, None]
    bins = np.floor(phase).astype(np.int32) % m
    bins += (np.arange(n, dtype=np.int32) * m)[:, None]
    index = bins.ravel()
    sums = np.bincount(index, weights=np.tile(values, n), minlength=n * m).reshape(n, m)
    counts = np.bincount(index, minlength=n * m).reshape(n, m).astype(np.float64)
    means = sums / np.maximum(counts, 1.0)
    total = float(values @ values)
    within = (total - (sums * means).sum(axis=1)) / max(len(values) - m, 1)
    # circular correlation with the sequence, every shift at once
    pattern = np.repeat(seq.astype(np.float64), per_cell)
    spectrum = np.fft.rfft(means, axis=1) * np.conj(np.fft.rfft(pattern))[None, :]
    surface = np.fft.irfft(spectrum, n=m, axis=1)
    best = surface.argmax(axis=1)
    rows = np.arange(n)
    peak = surface[rows, best]
    # (a period of a whole number of samples leaves some bins empty in every repetition: they
    # carry no information, and no noise)
    spread = np.where(counts > 0, pattern[None, :] ** 2 / np.maximum(counts, 1.0), 0.0)
    noise = np.sqrt(np.maximum(within, 1e-12) * _neighbours(values) * spread.sum(axis=1))
    # the shift to a fraction of a bin: a parabola through the peak and its neighbours
    left, right = surface[rows, (best - 1) % m], surface[rows, (best + 1) % m]
    curve = left - 2 * peak + right
    frac = np.where(curve < 0, 0.5 * (left - right) / np.where(curve < 0, curve, -1.0), 0.0)
    return peak / noise, (best + frac) / per_cell


def _neighbours(values: np.ndarray, lags: int = 6) -> float:
    """1 + 2 * the sum of the autocorrelations at lags 1..``lags``: how many times fewer
    independent samples a correlated sequence holds (at least 1)."""
    v = values - values.mean()
    energy = float(v @ v)
    if energy <= 0 or len(v) <= lags:
        return 1.0
    rho = [float(v[:-k] @ v[k:]) / energy for k in range(1, lags + 1)]
    return max(1.0, 1.0 + 2.0 * sum(rho))


Axis = tuple[float, float, float, float]  # (z, angle in degrees, period, shift in cells)


def _axis(
    r: np.ndarray,
    seq: np.ndarray,
    length: tuple[float, float],
    count: int,
    near: float | None = None,
) -> list[Axis]:
    """The template's stripes across ``r`` (varying along x), coarse to fine: up to ``count``
    readings (z, angle in degrees, period in pixels along x at y = 0, shift of the sequence in
    cells), best first, each at a distinct period and with z >= _MIN_Z. ``near``: only angles
    within a quarter of a degree of it."""
    lo, hi = length
    # coarse: angles every 0.25 degrees, periods every 0.4 %, half-cell bins
    if near is None:
        angles = np.arange(-_MAX_ANGLE, _MAX_ANGLE + 1e-9, 0.25)
    else:
        angles = near + np.array([-0.25, 0.0, 0.25])
    periods = lo * 1.004 ** np.arange(int(np.log(hi / lo) / np.log(1.004)) + 1)
    profiles, keep, pad = _profiles(r, angles)
    # a cell spans 3 or more profile samples: pairs of them, averaged, fold as sharply
    width = profiles.shape[1] // 2 * 2
    pairs = 0.5 * (profiles[:, 0:width:2] + profiles[:, 1:width:2])
    kept = keep[:, 0:width:2] & keep[:, 1:width:2]
    scores = np.empty((len(angles), len(periods)))
    for i, t in enumerate(angles):
        scores[i], _ = _fold_scores(pairs[i], kept[i], pad, periods, seq, t, per_cell=2, spacing=2)
    best_angle = scores.argmax(axis=0)
    per_period = scores.max(axis=0)
    found: list[Axis] = []
    for j in np.argsort(per_period)[::-1]:
        if len(found) == count or per_period[j] < _MIN_Z * 0.8:
            break
        if any(abs(np.log(periods[j] / f[2])) < 0.03 for f in found):
            continue  # a shoulder of a period already taken
        reading = _fine(r, seq, float(angles[best_angle[j]]), float(periods[j]))
        if reading[0] >= _MIN_Z and all(abs(np.log(reading[2] / f[2])) >= 0.03 for f in found):
            found.append(reading)
    return sorted(found, key=lambda f: -f[0])


def _merge(readings: list[Axis], more: list[Axis]) -> list[Axis]:
    """``readings`` and the ``more`` at a distinct period, best first."""
    for extra in more:
        if all(abs(np.log(extra[2] / f[2])) >= 0.03 for f in readings):
            readings = [*readings, extra]
    return sorted(readings, key=lambda f: -f[0])


def _fine(r: np.ndarray, seq: np.ndarray, angle: float, period: float) -> Axis:
    """Around a coarse reading (within half its steps): angles every 0.05 degrees, periods
    every 0.05 %."""
    best: Axis = (0.0, angle, period, 0.0)
    angles = angle + np.arange(-0.25, 0.2501, 0.05)
    periods = period * 1.0005 ** np.arange(-6, 7)
    profiles, keep, pad = _profiles(r, angles)
    for i, t in enumerate(angles):
        z, shift = _fold_scores(profiles[i], keep[i], pad, periods, seq, float(t))
        j = int(np.argmax(z))
        if z[j] > best[0]:
            best = (float(z[j]), float(t), float(periods[j]), float(shift[j]))
    return best


def locate(luma: np.ndarray, key: bytes, *, per_axis: int = 2) -> list[Placement]:
    """Where the canonical grid may lie in ``luma`` (H x W float32), known modulo TILE
    canonical pixels (:func:`placements` lists the whole-grid ones), most likely first: the
    combinations of the best ``per_axis`` readings of each axis; empty when the template is
    not seen on both axes. The decoder tries them in turn (a wrong lattice decodes nothing)."""
    h, w = luma.shape
    if min(h, w) < 128:  # too small to hold two repetitions of the template
        return []
    scale = min(1.0, _WORK / max(h, w))
    work = luma
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        work = cv2.resize(luma, size, interpolation=cv2.INTER_AREA)
    r = _residual(work)
    wh, ww = r.shape
    reps = 512 / TILE  # repetitions across the whole frame
    a, b = sequences(key)
    r_t = np.ascontiguousarray(r.T)
    range_x = (ww / reps * 0.98, ww / reps / (1 - _MAX_CROP))
    range_y = (wh / reps * 0.98, wh / reps / (1 - _MAX_CROP))
    across = _axis(r, a, range_x, per_axis)
    down = _axis(r_t, b, range_y, per_axis)
    # A rotation tilts both sets of stripes alike (the angles are measured with opposite
    # signs): where one axis is clear, the other is searched again at its angle alone, where
    # the picture's own stripes (a building, a fence) compete far less.
    if down:
        across = _merge(across, _axis(r, a, range_x, 1, near=-down[0][1]))
    if across:
        down = _merge(down, _axis(r_t, b, range_y, 1, near=-across[0][1]))
    out = []
    for zu, tx, px, su in across:
        for zv, ty, py, sv in down:
            # u = TILE/px * (x - y tan(tx)) - TILE/CELLS * su; v likewise with x and y swapped
            gx, gy = TILE / px, TILE / py
            tan = np.tan(np.deg2rad([tx, ty]))
            offset = -TILE / CELLS * np.array([su, sv])
            out.append(Placement(_affine(gx, gy, tan, offset, scale), min(zu, zv)))
            if abs(tx + ty) <= _AGREE:
                continue
            # A picture's own stripes can tilt one axis's reading; a rotation turns both
            # alike: also each axis's angle for both (the other axis's offset moved so that
            # its stripes stay put at the centre), tried right after.
            for rank, agreed in enumerate(
                (np.array([-tan[1], tan[1]]), np.array([tan[0], -tan[0]]))
            ):
                moved = offset + np.array([gx * wh, gy * ww]) / 2 * (agreed - tan)
                later = min(zu, zv) - 1e-3 * (rank + 1)
                out.append(Placement(_affine(gx, gy, agreed, moved, scale), later))
    return sorted(out, key=lambda p: -p.z)


_AGREE = 0.1  # degrees: readings of the two axes this far from one rotation get a variant


def _affine(gx: float, gy: float, tan: np.ndarray, offset: np.ndarray, scale: float) -> np.ndarray:
    """Suspect pixels -> canonical grid, from each axis's gain, tilt (tangent) and offset
    (``scale``: work image pixels per suspect pixel)."""
    linear = np.array([[gx, -gx * tan[0]], [-gy * tan[1], gy]])
    return np.hstack([linear * scale, offset[:, None]])


def placements(found: Placement, shape: tuple[int, int], canonical: int) -> list[np.ndarray]:
    """The whole-grid versions of ``found`` (shifted by multiples of TILE) that put the
    suspect's corners inside the canonical frame, the suspect's centre nearest to the frame's
    first."""
    h, w = shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64).T
    mapped = found.matrix @ corners  # 2 x 4
    lo, hi = mapped.min(axis=1), mapped.max(axis=1)
    slack = 0.05 * canonical  # a turned picture's corners reach out of the frame
    options = []
    for axis in (0, 1):
        first = int(np.ceil((-slack - lo[axis]) / TILE))
        last = int(np.floor((canonical + slack - hi[axis]) / TILE))
        options.append(range(first, last + 1))
    centre = mapped.mean(axis=1)
    out = []
    for ku in options[0]:
        for kv in options[1]:
            m = found.matrix.copy()
            m[0, 2] += ku * TILE
            m[1, 2] += kv * TILE
            off_centre = float(np.hypot(*(centre + TILE * np.array([ku, kv]) - canonical / 2)))
            out.append((off_centre, m))
    # A crop of up to a quarter of the frame keeps the suspect's centre within half a tile of
    # the frame's: the nearest placement is the right one, the next the fallback.
    return [m for _, m in sorted(out, key=lambda dm: dm[0])]


def canonical_view(
    luma: np.ndarray, matrix: np.ndarray, canonical: int
) -> tuple[np.ndarray, np.ndarray]:
    """The suspect drawn on the canonical grid by ``matrix`` (suspect -> canonical): the
    canonical luma (missing parts filled with the suspect's mean) and the coverage (0..1)."""
    linear = matrix[:, :2]
    # suspect pixels per canonical pixel: shrink the suspect first (area filter) when > 1, so
    # that the warp below samples at about one pixel per pixel, as Pillow's resampling does
    per_canon = float(np.sqrt(abs(np.linalg.det(np.linalg.inv(linear)))))
    src = luma
    if per_canon > 1.0:
        h, w = luma.shape
        size = (max(1, round(w / per_canon)), max(1, round(h / per_canon)))
        src = cv2.resize(luma, size, interpolation=cv2.INTER_AREA)
        to_small = np.diag([size[0] / w, size[1] / h, 1.0])
        matrix = matrix @ np.linalg.inv(to_small)
    # continuous coordinates to pixel indices (centres at integers), for OpenCV
    index = matrix.copy()
    index[:, 2] += matrix[:, :2] @ np.array([0.5, 0.5]) - 0.5
    fill = float(src.mean())
    view = cv2.warpAffine(
        src, index, (canonical, canonical), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=fill,
    )  # fmt: skip
    coverage = cv2.warpAffine(
        np.ones(src.shape, np.float32), index, (canonical, canonical),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )  # fmt: skip
    return view, coverage


_REACH = 3  # canonical pixels a placement may be off by for refine()


def _phase_shift(fold: np.ndarray, pattern: np.ndarray) -> float:
    """By how many pixels the TILE-periodic ``fold`` lags ``pattern`` (fold(u) ~ pattern(u -
    shift)), to a fraction of a pixel: the best whole-pixel lag within _REACH, then the slope
    of the cross-spectrum's phase over the lower harmonics (weighted by their magnitude)."""
    cross = np.fft.rfft(fold) * np.conj(np.fft.rfft(pattern))
    corr = np.fft.irfft(cross, n=TILE)
    near = np.r_[0 : _REACH + 1, TILE - _REACH : TILE]  # lags within _REACH of none
    whole = int(near[np.argmax(corr[near])])
    k = np.arange(len(cross))
    turned = cross * np.exp(2j * np.pi * k * whole / TILE)  # the whole-pixel lag taken out
    phase = np.angle(turned[1 : TILE // 4])
    weight = np.abs(turned[1 : TILE // 4]) * k[1 : TILE // 4]
    frac = -float((weight * phase).sum() / (weight * k[1 : TILE // 4]).sum()) * TILE / (2 * np.pi)
    shift = (whole + float(np.clip(frac, -1.0, 1.0)) + TILE / 2) % TILE - TILE / 2
    return shift


def refine(view: np.ndarray, coverage: np.ndarray, matrix: np.ndarray, key: bytes) -> np.ndarray:
    """``matrix`` corrected to a fraction of a canonical pixel: the template in the suspect
    drawn on the canonical grid (``view``) is compared with the keyed one in each half of the
    covered part. For the stripes across u, the left and right halves give how their lag grows
    along u (a scale error), the top and bottom halves how it grows along v (an angle error);
    likewise for v. The linear map is adjusted so that all halves line up."""
    covered = coverage > 0.99
    r = _residual(view) * covered
    out = matrix.copy()
    for axis, seq in zip((0, 1), sequences(key), strict=True):
        plane, cover = (r, covered) if axis == 0 else (r.T, covered.T)
        # plane's columns run along this axis, its rows along the other
        cols = np.flatnonzero(cover.sum(axis=0) > 0.25 * plane.shape[0])
        rows = np.flatnonzero(cover.sum(axis=1) > 0.25 * plane.shape[1])
        if min(len(cols), len(rows)) < 2 * TILE:
            continue
        pattern = np.repeat(seq, CELL)
        left, right = np.array_split(cols, 2)
        top, bottom = np.array_split(rows, 2)
        parts = ((rows, left), (rows, right), (top, cols), (bottom, cols))
        lags = [_lag(plane, cover, part_rows, part_cols, pattern) for part_rows, part_cols in parts]
        along = (lags[1] - lags[0]) / (right.mean() - left.mean())
        across = (lags[3] - lags[2]) / (bottom.mean() - top.mean())
        if max(abs(along), abs(across)) > _MAX_SLOPE:
            continue  # not the template's doing: leave this axis as the search read it
        centre = np.array([cols.mean(), rows.mean()]) + 0.5
        at_centre = _lag(plane, cover, rows, cols, pattern)
        at_zero = at_centre - along * centre[0] - across * centre[1]
        # the view shows canonical u - lag(u, v) at (u, v): canonical = (1 - along) u -
        # across v - at_zero, with u and v the rows of ``matrix`` (this axis, the other)
        out[axis] = (1.0 - along) * matrix[axis] - across * matrix[1 - axis]
        out[axis, 2] -= at_zero
    return out


def _lag(
    plane: np.ndarray, cover: np.ndarray, rows: np.ndarray, cols: np.ndarray, pattern: np.ndarray
) -> float:
    """The template's lag (canonical pixels) in the ``rows`` x ``cols`` part of ``plane``."""
    profile = plane[rows].sum(axis=0) / np.maximum(cover[rows].sum(axis=0), 1)
    sums = np.bincount(cols % TILE, weights=profile[cols], minlength=TILE)
    counts = np.bincount(cols % TILE, minlength=TILE)
    return _phase_shift(sums / np.maximum(counts, 1), pattern)


_MAX_SLOPE = 0.01  # a search reading is off by at most ~0.3 % in scale and ~0.3 degrees
