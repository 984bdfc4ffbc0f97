"""Compare a suspect image with the registered original: align, normalise tone, map changes.

``compare(suspect, registered)`` answers whether the suspect is the registered picture after
benign processing (re-encoding, resizing, small crops, global tone and colour changes) or after
a local content change, and where. Pure functions on RGB uint8 arrays (OpenCV, scikit-image);
no I/O.

1. Geometry. Both images are brought to the working resolution (``imaging.WORK_SIDE``). When the
   aspect ratios agree the registered image is resized onto the suspect's frame; otherwise, or
   when that fits badly, ORB features matched with a ratio test and a RANSAC similarity
   transform (rotation, scale, translation), refined to sub-pixel precision by ECC, warp the
   registered image onto the suspect, and pixels of the suspect that the original does not
   cover are left out. A resized frame is checked by ECC for a slight rotation or shift that
   the resize misses (a smooth picture rotated by 2 degrees still "fits").
2. Tone. A colour transform mapping registered to suspect colours (3 x 3 matrix, offset, and
   per-channel square and cube terms, output clipped to [0, 255]) is fitted by least squares,
   twice (the second time without the worst 20 % of pixels, so that edited areas do not bend
   it). This absorbs brightness, contrast, saturation, gamma and colour casts.
3. Change map. The absolute difference of luma and chroma, box-filtered, is divided by the
   local texture of the original (compression error grows with texture), then thresholded at
   max(floor, median + k * MAD) of the map — a statistic of this image pair, not a global PSNR
   cut. Morphological opening removes speckle, closing joins fragments; connected components
   larger than a minimum area are the changed regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .imaging import shrink_to, work_image
from .keypoints import detect, ratio_matches, similarity_transform
from .quality import psnr, ssim
from .records import AlignedBy, Region

__all__ = ["Comparison", "compare"]

_FLOOR = 1.6  # minimum normalised difference that can count as a change
_MAD_K = 8.0
_MIN_AREA_FRACTION = 0.0008  # of the working image (~470 px at 768 x 768)
_TEXTURE_C = 4.0  # grey levels added to the texture so flat areas are not divided by zero
_REFINE_LIMIT = 0.05  # of the working side: the most ECC may move a corner of its start
_REFINE_SCALE = 0.5  # a resized suspect is checked for a slight rotation or shift at half size
_MIN_SHIFT = 0.5  # px at the working size: a smaller correction is left alone
_ZOOM_LIMIT = 0.15  # of the working side: how far ECC may go for an even crop (poor fit)


@dataclass(frozen=True)
class Comparison:
    """The result of comparing a suspect with its registered original."""

    regions: tuple[Region, ...]  # in suspect pixel coordinates
    mask: np.ndarray  # bool, suspect size: changed pixels
    heat: np.ndarray  # float32, suspect size: normalised difference (0 = none)
    psnr: float  # aligned, tone-normalised suspect vs registered
    ssim: float
    aligned_by: AlignedBy
    changed_fraction: float
    covered_fraction: float  # share of the suspect the registered image covers
    same_picture: bool  # False when the typical pixel differs: another picture, or a repaint


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if size[0] < img.shape[1]:
        return shrink_to(img, size)
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


def _features_transform(suspect: np.ndarray, registered: np.ndarray) -> np.ndarray | None:
    """A 2x3 similarity transform mapping registered -> suspect pixels, or None."""
    points_s, desc_s = detect(cv2.cvtColor(suspect, cv2.COLOR_RGB2GRAY), 2000)
    points_r, desc_r = detect(cv2.cvtColor(registered, cv2.COLOR_RGB2GRAY), 2000)
    if len(points_s) < 10 or len(points_r) < 10:
        return None
    pairs = ratio_matches(desc_r, desc_s)
    if len(pairs) < 12:
        return None
    matrix, inliers = similarity_transform(
        points_r[pairs[:, 0]], points_s[pairs[:, 1]], threshold=2.0, max_iters=4000
    )
    return _refine(suspect, registered, matrix) if matrix is not None and inliers >= 12 else None


def _refine(
    suspect: np.ndarray,
    registered: np.ndarray,
    matrix: np.ndarray,
    *,
    scale: float = 1.0,
    motion: int = cv2.MOTION_AFFINE,
    limit: float = _REFINE_LIMIT,
) -> np.ndarray:
    """Bring a transform (registered -> suspect pixels) to sub-pixel precision by ECC.

    RANSAC on a few dozen ORB keypoints leaves errors of a pixel or more far from the inliers,
    and a plain resize misses a slight rotation of a smooth picture; either is enough for the
    edges to read as changed. The enhanced correlation coefficient (Evangelidis & Psarakis,
    PAMI 2008) fits an affine warp to all pixels from the estimate, blind to brightness and
    contrast; ``scale`` < 1 fits on a reduced copy (4x cheaper at 0.5), ``motion`` is OpenCV's
    motion model. A fit that does not converge, or that moves a corner by more than ``limit``
    of the long side, leaves ``matrix``.
    """
    small_s, small_r = suspect, registered
    if scale != 1.0:
        small_s = cv2.resize(suspect, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        small_r = cv2.resize(registered, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    grey_s = cv2.cvtColor(small_s, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey_r = cv2.cvtColor(small_r, cv2.COLOR_RGB2GRAY).astype(np.float32)
    warp = cv2.invertAffineTransform(matrix).astype(np.float32)  # suspect -> registered
    warp[:, 2] *= scale
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-5)
    try:
        # (OpenCV's default pre-smoothing: a 5 x 5 Gaussian)
        _, found = cv2.findTransformECC(grey_s, grey_r, warp, motion, criteria)
    except cv2.error:  # did not converge (flat or unrelated content)
        return matrix
    unscaled: np.ndarray = np.array(found, np.float64)
    unscaled[:, 2] = unscaled[:, 2] / scale
    refined = np.asarray(cv2.invertAffineTransform(unscaled), np.float64)
    h, w = suspect.shape[:2]
    return refined if _shift(refined, h, w, matrix) <= limit * max(h, w) else matrix


def _shift(matrix: np.ndarray, h: int, w: int, start: np.ndarray | None = None) -> float:
    """How far (px) ``matrix`` puts the farthest corner of an h x w frame from where ``start``
    (default: the identity) puts it."""
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64).T
    before = corners[:2] if start is None else start @ corners
    return float(np.abs(matrix @ corners - before).max())


def _fit_tone(src: np.ndarray, dst: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Map ``src`` colours onto ``dst`` with a robust colour transform (see module doc).

    Each output channel is a linear combination of R, G, B plus a constant and the channel's
    own square and cube, clipped to [0, 255] as the editing tool's output was; then a monotone
    correction by quantile matching absorbs tone curves the polynomial cannot follow. The
    model is a sum of per-channel functions, so it is applied with 256-entry lookup tables.
    """
    # Saturated suspect pixels say nothing about the transform (the tool clipped them): fit on
    # the others; the clipped prediction then reproduces the saturation.
    unsaturated = valid & np.all((dst > 2) & (dst < 253), axis=2)
    fit_on = unsaturated if unsaturated.sum() > 1000 else valid
    idx = np.flatnonzero(fit_on)
    idx = idx[:: max(1, idx.size // 40_000)]
    x = src.reshape(-1, 3)[idx].astype(np.float64) / 255.0
    y = dst.reshape(-1, 3)[idx].astype(np.float64) / 255.0
    sample = np.flatnonzero(valid)
    sample = sample[:: max(1, sample.size // 40_000)]
    sample_src = src.reshape(-1, 3)[sample]
    sample_dst = dst.reshape(-1, 3)[sample].astype(np.float64)
    v = np.arange(256) / 255.0
    out = np.empty(src.shape, dtype=np.float32)
    for c in range(3):
        design = np.column_stack([x, np.ones(len(x)), x[:, c] ** 2, x[:, c] ** 3])
        coef = _least_squares(design, y[:, c])
        residual = np.abs(np.clip(design @ coef, 0, 1) - y[:, c])
        keep = residual <= np.quantile(residual, 0.8)
        coef = _least_squares(design[keep], y[keep, c])
        luts = [coef[j] * v for j in range(3)]
        luts[c] = luts[c] + coef[3] + coef[4] * v**2 + coef[5] * v**3
        table = np.stack(luts, axis=1) * 255.0  # 256 x 3: each channel's share of the output
        knots, values = _monotone_medians(_predict(sample_src, table), sample_dst[:, c])
        out[:, :, c] = _piecewise_linear(_predict(src, table.astype(np.float32)), knots, values)
    return out


def _predict(px: np.ndarray, table: np.ndarray) -> np.ndarray:
    """sum_j table[px[..., j], j], clipped to [0, 255]: one channel of the colour transform,
    by lookup tables (OpenCV's LUT and channel sum: a few ms for a work image)."""
    flat = np.ascontiguousarray(px).reshape(-1, 1, 3)
    looked = cv2.LUT(flat, table.reshape(256, 1, 3).astype(table.dtype))
    summed = cv2.transform(looked, np.ones((1, 3), table.dtype))
    return np.clip(summed.reshape(px.shape[:-1]), 0, 255)


def _piecewise_linear(x: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.interp(x, knots, values)`` for x in [0, 255], through a table at 1/64 of a grey
    level (within 0.01 grey levels of it for the slopes a tone curve has; ~4x faster)."""
    steps = 64
    grid = np.interp(np.arange(255 * steps + 1) / steps, knots, values).astype(np.float32)
    return grid[np.rint(x * steps).astype(np.int32)]


def _least_squares(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """argmin |design @ coef - target| by the normal equations: six unknowns and ~40,000
    well-spread samples make them well conditioned, and they take a tenth of the time of
    ``np.linalg.lstsq`` (an SVD of the whole design matrix); lstsq remains the fallback."""
    gram = design.T @ design
    try:
        return np.linalg.solve(gram, design.T @ target)
    except np.linalg.LinAlgError:  # a flat or saturated sample: rank-deficient
        return np.linalg.lstsq(design, target, rcond=None)[0]


def _monotone_medians(predicted: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, ...]:
    """A monotone curve predicted -> observed: per-bin medians of *paired* values, made
    non-decreasing by isotonic regression weighted by the bins' sizes.

    Pairs (not histograms) keep it robust: a local edit is a minority of the pixels in almost
    every bin, whereas it shifts every quantile of a histogram after it. Where an edit is the
    majority of a bin (a bright patch painted over the darkest area of a grey photo), that
    bin's median is off; isotonic regression pools it with its larger neighbours, where a
    running maximum would have carried it up to every brighter level of the picture.
    """
    knots, values, weights = _bin_medians(predicted, observed)
    return knots, _isotonic(values, weights)


def _bin_medians(predicted: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, ...]:
    """(knots, values, weights): the medians of ``predicted`` and ``observed`` in each of 32
    ranges of ``predicted`` holding at least 30 pairs, and the pairs in each, between the
    fixed ends (0, 0) and (255, 255) of weight 1. The bins are ranges of ``predicted``, so one
    sort of it groups them and gives their medians; ``observed`` holds whole grey levels, so a
    32 x 256 count gives theirs (both exactly ``np.median``'s)."""
    edges = np.linspace(0, 255, 33)
    order = np.argsort(predicted, kind="stable")
    ranked = predicted[order]
    which = np.clip(np.digitize(ranked, edges) - 1, 0, 31)
    counts = np.bincount(which, minlength=32)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    levels = np.clip(np.rint(observed[order]), 0, 255).astype(np.int64)
    histogram = np.bincount(which * 256 + levels, minlength=32 * 256).reshape(32, 256)
    cumulative = np.cumsum(histogram, axis=1)
    knots, values, weights = [0.0], [0.0], [1.0]
    for b in np.flatnonzero(counts >= 30):
        n, start = int(counts[b]), int(starts[b])
        lo, hi = (n - 1) // 2, n // 2  # the middle one or two of the bin, in rank order
        knots.append(float((ranked[start + lo] + ranked[start + hi]) / 2))
        below = cumulative[b]
        values.append(float(np.searchsorted(below, lo + 1) + np.searchsorted(below, hi + 1)) / 2)
        weights.append(float(n))
    knots.append(255.0)
    values.append(255.0)
    weights.append(1.0)
    return np.array(knots), np.array(values), np.array(weights)


def _isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in weighted least squares: pool
    adjacent violators (Ayer et al. 1955; Barlow et al., *Statistical inference under order
    restrictions*, 1972). A few dozen points: a plain loop."""
    blocks: list[list[float]] = []  # [weighted mean, weight, points]
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        blocks.append([value, weight, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (v2, w2, n2), (v1, w1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(int(n), v) for v, _, n in blocks])


def _ycc(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2YCrCb).astype(
        np.float32
    )


def _local_std(plane: np.ndarray, size: int = 7) -> np.ndarray:
    mean = cv2.blur(plane, (size, size))
    return np.sqrt(np.maximum(cv2.blur(plane * plane, (size, size)) - mean * mean, 0))


def _change_map(suspect: np.ndarray, original: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Difference normalised by local texture of the original (float32, 0 outside ``valid``).

    Luma and chroma differences are each set against the texture of the same channels:
    compression error grows with texture, and chroma subsampling errs most at colour edges.
    """
    s, o = _ycc(suspect), _ycc(original)
    weights = (1.0, 0.7, 0.7)  # Y, Cr, Cb
    diff = sum(w * np.abs(s[:, :, c] - o[:, :, c]) for c, w in enumerate(weights))
    texture = sum(w * _local_std(o[:, :, c]) for c, w in enumerate(weights))
    heat = cv2.blur(diff, (5, 5)) / (_TEXTURE_C + 0.5 * texture)
    heat[~valid] = 0
    return heat.astype(np.float32)


def compare(
    suspect: np.ndarray, registered: np.ndarray, *, suspect_work: np.ndarray | None = None
) -> Comparison:
    """Compare ``suspect`` with ``registered`` (both RGB uint8). See the module docstring.

    ``registered`` is only looked at at the working resolution, so a large one may come
    decoded reduced (``imaging.decode_image(at_least=WORK_SIDE)``); ``suspect_work`` is the
    suspect's work image, if the caller has it."""
    sh, sw = suspect.shape[:2]
    s_work = work_image(suspect) if suspect_work is None else suspect_work
    size = (s_work.shape[1], s_work.shape[0])
    rh, rw = registered.shape[:2]
    aspect_gap = abs(sw / sh - rw / rh) / (rw / rh)
    valid = np.ones((size[1], size[0]), dtype=bool)
    aligned_by: AlignedBy = "resize"
    r_work = _resize(registered, size)
    matrix = None
    poor = aspect_gap > 0.01 or _poor_fit(s_work, r_work)
    if poor:
        r_scaled = work_image(registered)
        matrix = _features_transform(s_work, r_scaled)
        if matrix is not None:
            r_work, valid = _warped(r_scaled, matrix, size)
            aligned_by = "features"
        elif aspect_gap > 0.01:
            aligned_by = "none"
    toned = _fit_tone(r_work, s_work, valid)
    heat = _change_map(s_work, toned, valid)
    if matrix is None and aspect_gap <= 0.01:  # the same frame, maybe slightly turned or shifted
        # A rotation and shift only (a local edit pulls a freer model off), kept only if the
        # typical pixel then agrees better: an edit changes a minority of pixels, not the median.
        # When the resize fits poorly and local features found no transform (a texture whose
        # keypoints repeat), the frame may also be cropped evenly: then an affine warp, which
        # can zoom, from up to 15 % away.
        matrix = _refine(
            s_work,
            r_work,
            np.eye(2, 3),
            scale=_REFINE_SCALE,
            motion=cv2.MOTION_AFFINE if poor else cv2.MOTION_EUCLIDEAN,
            limit=_ZOOM_LIMIT if poor else _REFINE_LIMIT,
        )
        if _shift(matrix, size[1], size[0]) > _MIN_SHIFT:
            r_turned, valid_turned = _warped(r_work, matrix, size)
            toned_turned = _fit_tone(r_turned, s_work, valid_turned)
            heat_turned = _change_map(s_work, toned_turned, valid_turned)
            if np.median(heat_turned[valid_turned]) < 0.9 * np.median(heat[valid]):
                r_work, valid, toned, heat = r_turned, valid_turned, toned_turned, heat_turned
                aligned_by = "refined"
    mask_work, regions_work, same_picture = _regions(heat, valid)
    # Back to suspect coordinates.
    fx, fy = sw / size[0], sh / size[1]
    regions = tuple(
        Region(round(x * fx), round(y * fy), max(1, round(w * fx)), max(1, round(h * fy)), score)
        for x, y, w, h, score in regions_work
    )
    mask = cv2.resize(mask_work.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
    heat_full = cv2.resize(heat, (sw, sh), interpolation=cv2.INTER_LINEAR)
    toned_u8 = np.clip(np.rint(toned), 0, 255).astype(np.uint8)
    s_cmp = np.where(valid[:, :, None], s_work, toned_u8)
    return Comparison(
        regions=regions,
        mask=mask,
        heat=heat_full,
        psnr=round(psnr(toned_u8, s_cmp), 2),
        ssim=round(ssim(toned_u8, s_cmp), 4),
        aligned_by=aligned_by,
        changed_fraction=float(mask_work[valid].mean()) if valid.any() else 0.0,
        covered_fraction=float(valid.mean()),
        same_picture=same_picture,
    )


def _warped(
    registered: np.ndarray, matrix: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The registered image warped onto the suspect's frame, and where it covers it (eroded:
    the interpolated rim is left out)."""
    warped = cv2.warpAffine(
        registered, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    cover = cv2.warpAffine(
        np.full(registered.shape[:2], 255, np.uint8), matrix, size, flags=cv2.INTER_NEAREST
    )
    return warped, cv2.erode(cover, np.ones((5, 5), np.uint8)) > 0


def _poor_fit(s_work: np.ndarray, r_work: np.ndarray) -> bool:
    """Whether a plain resize leaves the two images visibly misaligned (shifted or cropped)."""
    grey_s = cv2.cvtColor(s_work, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey_r = cv2.cvtColor(r_work, cv2.COLOR_RGB2GRAY).astype(np.float32)
    a: np.ndarray = cv2.Laplacian(cv2.GaussianBlur(grey_s, (5, 5), 1.5), cv2.CV_32F)
    b: np.ndarray = cv2.Laplacian(cv2.GaussianBlur(grey_r, (5, 5), 1.5), cv2.CV_32F)
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return denom > 0 and float((a * b).sum()) / denom < 0.5


def _regions(
    heat: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int, int, int, float]], bool]:
    """(changed mask, regions, whether the two are the same picture at all)."""
    values = heat[valid]
    if values.size == 0:
        return np.zeros_like(valid), [], False
    median = float(np.median(values))
    if median > _FLOOR:
        # The typical pixel differs beyond compression noise: not the same picture (or a global
        # repaint). Everything the original covers counts as changed.
        x, y, w, h = cv2.boundingRect(valid.astype(np.uint8))
        return valid.copy(), [(x, y, w, h, 1.0)], False
    mad = float(np.median(np.abs(values - median))) * 1.4826
    threshold = max(_FLOOR, median + _MAD_K * mad)
    mask: np.ndarray = (heat > threshold).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    # Close generously: letters of a word, or fragments of one pasted object, form one region.
    mask = cv2.morphologyEx(
        mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21))
    )
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_area = _MIN_AREA_FRACTION * heat.size
    keep = np.zeros_like(mask, dtype=bool)
    regions = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < min_area:
            continue
        component = labels == label
        keep |= component
        strength = float(np.percentile(heat[component], 90)) / threshold
        score = float(np.clip((strength - 1.0) / 2.0 + 0.5, 0.0, 1.0))
        regions.append((x, y, w, h, round(score, 3)))
    return keep, _merge_near(regions, gap=max(heat.shape) // 50), True


def _merge_near(
    regions: list[tuple[int, int, int, int, float]], *, gap: int
) -> list[tuple[int, int, int, int, float]]:
    """Merge boxes closer than ``gap`` pixels (fragments of one edit), largest first."""
    boxes = list(regions)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if (
                    a[0] - gap < b[0] + b[2]
                    and b[0] - gap < a[0] + a[2]
                    and a[1] - gap < b[1] + b[3]
                    and b[1] - gap < a[1] + a[3]
                ):
                    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                    x1 = max(a[0] + a[2], b[0] + b[2])
                    y1 = max(a[1] + a[3], b[1] + b[3])
                    boxes[i] = (x0, y0, x1 - x0, y1 - y0, max(a[4], b[4]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes, key=lambda r: -r[2] * r[3])
