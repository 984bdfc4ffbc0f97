"""Local-feature signatures of images, to find a registered picture from a crop or a rotation.

The watermark and PDQ both describe the *whole* frame, so a copy cropped by more than a few
percent, or rotated, escapes them. ORB keypoints (Rublee et al. 2011) describe small patches;
enough of them survive cropping, rotation, rescaling and recompression. A signature is up to
500 keypoints of the image at a working size, as positions relative to the frame (0..1) and
32-byte binary descriptors. Matching is by Hamming distance with Lowe's ratio test; a match
between two images is accepted only when a RANSAC similarity transform explains enough of the
matched pairs (:func:`geometric_inliers`). Pure functions on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Signature", "signature", "geometric_inliers", "MIN_INLIERS"]

_WORK_SIDE = 768
_FEATURES = 500
MIN_INLIERS = 15


@dataclass(frozen=True)
class Signature:
    points: np.ndarray  # N x 2 float32, (x, y) as fractions of width and height
    descriptors: np.ndarray  # N x 32 uint8 (ORB)
    aspect: float  # width / height of the image


def signature(rgb: np.ndarray, *, features: int = _FEATURES) -> Signature:
    """The ORB signature of an RGB uint8 image."""
    h, w = rgb.shape[:2]
    scale = min(1.0, _WORK_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    orb = cv2.ORB.create(nfeatures=features)
    keypoints, descriptors = orb.detectAndCompute(grey, None)
    if descriptors is None:
        return Signature(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), w / h)
    points = np.array([k.pt for k in keypoints], dtype=np.float32) / np.array(size, np.float32)
    return Signature(points, descriptors, w / h)


def geometric_inliers(query: Signature, reference: Signature, pairs: np.ndarray) -> int:
    """How many matched pairs (query index, reference index) one similarity transform explains.

    Points are put back into a common pixel scale (each frame's own aspect ratio), so that a
    crop, a rotation or a rescale of the reference is a similarity transform of the query.
    """
    if len(pairs) < MIN_INLIERS:
        return 0
    q = query.points[pairs[:, 0]] * np.array([query.aspect * 1000, 1000], np.float32)
    r = reference.points[pairs[:, 1]] * np.array([reference.aspect * 1000, 1000], np.float32)
    _, inliers = cv2.estimateAffinePartial2D(
        r, q, method=cv2.RANSAC, ransacReprojThreshold=8.0, maxIters=2000
    )
    return 0 if inliers is None else int(inliers.sum())
