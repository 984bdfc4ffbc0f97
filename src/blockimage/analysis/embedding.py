"""A global embedding of an image, to shortlist the registered pictures a crop may come from.

The keypoint matcher must not compare a suspect with every stored keypoint; it first asks for
the registered images whose *global* appearance is closest. The embedding is the default
backbone's pooled features (EfficientNet-Lite0, 1280 values), square-rooted and L2-normalised
(the Hellinger map, which keeps a few strong activations from dominating; Arandjelović &
Zisserman, "Three things everyone should know to improve object retrieval", CVPR 2012), centred
on the mean descriptor of real photographs (``embedding_mean.json``, from
``tools/imagenet/make_embedding_mean.py``), and projected on 256 fixed Gaussian directions
(Johnson-Lindenstrauss; the matrix is generated from SHA-256, so it is the same on every machine
and every numpy version).

Two things are kept per image: the signs of the 256 projections (a 32-byte sketch whose Hamming
distance tracks the angle between embeddings: Charikar, "Similarity estimation techniques from
rounding algorithms", STOC 2002), searched first, and the first 128 projections normalised, in
float16, to re-rank the sketch's shortlist by cosine similarity.

Measured on 70 photos and 227 video frames (``benchmarks/scale.py`` has the figures at scale):
crops of 10 % from any side and 2° rotations keep a cosine of 0.73-0.99 with their original,
and the original ranks first among the others.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from .classifier import DEFAULT_BACKBONE, load_classifier

__all__ = [
    "EMBEDDING_VERSION",
    "SKETCH_BYTES",
    "VECTOR_DIMS",
    "Embedding",
    "descriptor",
    "descriptor_mean",
    "embed_descriptors",
    "embed_features",
    "image_embedding",
]

_PROJECTED = 256
SKETCH_BYTES = _PROJECTED // 8
VECTOR_DIMS = 128
_MEAN_PATH = Path(__file__).with_name("embedding_mean.json")
# Changes whenever the embedding changes, so that stored indexes are rebuilt rather than mixed.
EMBEDDING_VERSION = f"{DEFAULT_BACKBONE}/hellinger/centred/gauss{_PROJECTED}-sha256/v1"


class Embedding:
    """The sketch (32 bytes) and the re-ranking vector (128 float32, unit length) of an image."""

    __slots__ = ("sketch", "vector")

    def __init__(self, sketch: np.ndarray, vector: np.ndarray) -> None:
        self.sketch = sketch
        self.vector = vector


def descriptor(features: np.ndarray) -> np.ndarray:
    """The Hellinger-mapped, L2-normalised pooled features (float64)."""
    root = np.sqrt(np.maximum(np.asarray(features, dtype=np.float64), 0.0))
    return root / max(float(np.linalg.norm(root)), 1e-12)


def descriptor_mean() -> np.ndarray:
    """The centre of the descriptors (``embedding_mean.json``)."""
    return _mean().copy()


def embed_descriptors(descriptors: np.ndarray) -> list[Embedding]:
    """Embeddings of N descriptors (N x 1280, as :func:`descriptor` gives them)."""
    projected = (np.atleast_2d(descriptors) - _mean()) @ _projection()
    head = projected[:, :VECTOR_DIMS]
    norms = np.maximum(np.linalg.norm(head, axis=1, keepdims=True), 1e-12)
    vectors = (head / norms).astype(np.float32)
    sketches = np.packbits(projected > 0, axis=1)
    return [Embedding(s, v) for s, v in zip(sketches, vectors, strict=True)]


def embed_features(features: np.ndarray) -> Embedding:
    """The embedding of an image from the default backbone's pooled features."""
    return embed_descriptors(descriptor(features))[0]


def image_embedding(rgb: np.ndarray) -> Embedding:
    """The embedding of an RGB uint8 image (runs the default backbone once)."""
    return embed_features(load_classifier().predict(rgb).features)


@lru_cache(maxsize=1)
def _mean() -> np.ndarray:
    doc = json.loads(_MEAN_PATH.read_text())
    return np.array(doc["mean"], dtype=np.float64)


@lru_cache(maxsize=1)
def _projection() -> np.ndarray:
    """1280 x 256 standard normal entries from SHA-256 in counter mode (Box-Muller)."""
    count = _mean().size * _PROJECTED
    words = np.frombuffer(
        b"".join(
            hashlib.sha256(b"blockimage-embedding-projection" + i.to_bytes(8, "big")).digest()
            for i in range((count * 4 + 31) // 32)
        ),
        dtype=">u4",
    )[:count]
    uniform = (words.astype(np.float64) + 0.5) / 2.0**32
    u1, u2 = uniform[0::2], uniform[1::2]
    radius = np.sqrt(-2.0 * np.log(u1))
    normal = np.empty(count)
    normal[0::2], normal[1::2] = radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)
    return normal.reshape(_mean().size, _PROJECTED) / np.sqrt(_PROJECTED)
