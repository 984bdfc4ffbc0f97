"""Local features: ORB keypoints, ratio-test matching and RANSAC similarity transforms.

The one home of the local-feature machinery that the comparison (aligning a suspect with its
original), the keypoint matcher (finding a registered picture from a crop or a rotation) and the
copy-move signal of the forensics use:

- :func:`detect`: ORB keypoints and 32-byte binary descriptors (Rublee et al., "ORB: an
  efficient alternative to SIFT or SURF", ICCV 2011);
- :func:`ratio_matches`: brute-force Hamming matching with Lowe's ratio test (Lowe, "Distinctive
  image features from scale-invariant keypoints", IJCV 2004, section 7.1);
- :func:`similarity_transform`: a rotation + uniform scale + translation fitted by RANSAC
  (Fischler & Bolles 1981) through OpenCV's ``estimateAffinePartial2D``.

A :class:`Signature` is what the keypoint index keeps of a registered image: up to 500 keypoints
of the image at the working resolution, as positions relative to the frame (0..1) and
descriptors. The watermark and PDQ both describe the *whole* frame, so a copy cropped by more
than a few percent, or rotated, escapes them; enough small patches survive cropping, rotation,
rescaling and recompression. Pure functions on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .imaging import work_image

__all__ = [
    "Signature",
    "signature",
    "geometric_inliers",
    "detect",
    "ratio_matches",
    "similarity_transform",
    "MIN_INLIERS",
    "RATIO",
]

_FEATURES = 500
_MIN_SIDE = 2 * 31 + 1  # ORB's patch and edge threshold (31 px) on both sides of a keypoint
MIN_INLIERS = 15
RATIO = 0.8  # Lowe's ratio: a match counts if clearly closer than the second-best candidate


@dataclass(frozen=True)
class Signature:
    points: np.ndarray  # N x 2 float32, (x, y) as fractions of width and height
    descriptors: np.ndarray  # N x 32 uint8 (ORB)
    aspect: float  # width / height of the image


def detect(
    grey: np.ndarray, features: int, *, fast_threshold: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """ORB keypoints of a grey uint8 image: (N x 2 float32 pixel positions, N x 32 uint8)."""
    if min(grey.shape[:2]) < _MIN_SIDE:  # no room for one ORB patch (OpenCV asserts)
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    orb = cv2.ORB.create(nfeatures=features, fastThreshold=fast_threshold)
    keypoints, descriptors = orb.detectAndCompute(grey, None)
    if descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2), descriptors


def ratio_matches(query: np.ndarray, train: np.ndarray, *, ratio: float = RATIO) -> np.ndarray:
    """Pairs (query index, train index) whose best match passes the ratio test (K x 2 int)."""
    if len(query) == 0 or len(train) < 2:
        return np.zeros((0, 2), np.intp)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query, train, k=2)
    good = [
        (m[0].queryIdx, m[0].trainIdx)
        for m in pairs
        if len(m) == 2 and m[0].distance < ratio * m[1].distance
    ]
    return np.array(good, dtype=np.intp).reshape(-1, 2)


def similarity_transform(
    src: np.ndarray, dst: np.ndarray, *, threshold: float, max_iters: int
) -> tuple[np.ndarray | None, int]:
    """RANSAC similarity transform mapping ``src`` to ``dst`` points: (2 x 3 matrix, inliers).

    ``threshold`` is the reprojection error, in the points' units, within which a pair is an
    inlier. Returns (None, 0) when no transform could be fitted.
    """
    if len(src) < 3:
        return None, 0
    matrix, inliers = cv2.estimateAffinePartial2D(
        src.astype(np.float32),
        dst.astype(np.float32),
        method=cv2.RANSAC,
        ransacReprojThreshold=threshold,
        maxIters=max_iters,
    )
    if matrix is None or inliers is None:
        return None, 0
    return matrix, int(inliers.sum())


def signature(rgb: np.ndarray, *, features: int = _FEATURES) -> Signature:
    """The ORB signature of an RGB uint8 image, at the working resolution."""
    h, w = rgb.shape[:2]
    small = work_image(rgb)
    points, descriptors = detect(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), features)
    size = np.array([small.shape[1], small.shape[0]], np.float32)
    return Signature(points / size, descriptors, w / h)


def geometric_inliers(query: Signature, reference: Signature, pairs: np.ndarray) -> int:
    """How many matched pairs (query index, reference index) one similarity transform explains.

    Points are put back into a common pixel scale (each frame's own aspect ratio), so that a
    crop, a rotation or a rescale of the reference is a similarity transform of the query.
    """
    if len(pairs) < MIN_INLIERS:
        return 0
    q = query.points[pairs[:, 0]] * np.array([query.aspect * 1000, 1000], np.float32)
    r = reference.points[pairs[:, 1]] * np.array([reference.aspect * 1000, 1000], np.float32)
    _, inliers = similarity_transform(r, q, threshold=8.0, max_iters=2000)
    return inliers
