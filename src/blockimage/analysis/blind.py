"""The blind tamper score: how likely an image was locally edited, judged from itself alone.

A logistic regression over two groups of features: the forensic signals of :mod:`.forensics`
(log-compressed, standardised) and the frozen backbone's pooled features (standardised, then
projected on 16 principal components). Trained by ``benchmarks/tamper_cv.py`` and shipped as
``blind_model.json`` (plain numbers: no pickles, no scikit-learn at run time). Use it for images
with no registered original; with an original, ``verify``'s comparison is far stronger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import BlockImageError
from .forensics import FEATURE_NAMES

__all__ = ["MODEL_PATH", "BlindModel", "ModelNotFoundError", "load_model", "log_compress"]

MODEL_PATH = Path(__file__).with_name("blind_model.json")


class ModelNotFoundError(BlockImageError, FileNotFoundError):
    """A model file is missing or does not fit this version's features."""


def log_compress(features: np.ndarray) -> np.ndarray:
    """Signed log1p: heavy-tailed forensic statistics on a scale a linear model can use."""
    return np.sign(features) * np.log1p(np.abs(features))


@dataclass(frozen=True)
class BlindModel:
    forensic_mean: np.ndarray
    forensic_scale: np.ndarray
    cnn_mean: np.ndarray
    cnn_scale: np.ndarray
    pca_mean: np.ndarray
    pca_components: np.ndarray  # k x 1280
    weights: np.ndarray  # len(FEATURE_NAMES) + k
    bias: float

    def score(self, forensic: np.ndarray, cnn: np.ndarray) -> float:
        f = (log_compress(forensic) - self.forensic_mean) / self.forensic_scale
        c = (cnn - self.cnn_mean) / self.cnn_scale
        z = np.concatenate([f, (c - self.pca_mean) @ self.pca_components.T])
        return float(1.0 / (1.0 + np.exp(-(z @ self.weights + self.bias))))


@lru_cache(maxsize=4)
def load_model(path: Path = MODEL_PATH) -> BlindModel:
    """Load (once per process) the shipped model."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"blind tamper model {path} is missing; reinstall BlockImage, or train it with "
            "`python benchmarks/tamper_cv.py --write-model`"
        ) from None
    if tuple(doc.get("features", ())) != FEATURE_NAMES:
        raise ModelNotFoundError(
            f"blind tamper model {path} was trained on other features; retrain it with "
            "`python benchmarks/tamper_cv.py --write-model`"
        )
    arrays = {
        k: np.array(v, dtype=np.float64)
        for k, v in doc.items()
        if k
        in (
            "forensic_mean",
            "forensic_scale",
            "cnn_mean",
            "cnn_scale",
            "pca_mean",
            "pca_components",
            "weights",
        )
    }
    return BlindModel(bias=float(doc["bias"]), **arrays)
