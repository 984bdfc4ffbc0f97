"""The blind tamper score: how likely an image was locally edited, judged from itself alone.

A logistic regression over the forensic signals of :mod:`.forensics`, trained by
``benchmarks/tamper_cv.py`` and shipped as ``blind_model.json`` (plain weights: no pickles, no
scikit-learn at run time). Use it for images with no registered original; with an original,
``verify``'s comparison is far stronger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .forensics import FEATURE_NAMES, forensic_features

__all__ = ["MODEL_PATH", "BlindModel", "ModelNotFoundError", "blind_tamper_score", "log_compress"]

MODEL_PATH = Path(__file__).with_name("blind_model.json")


class ModelNotFoundError(FileNotFoundError):
    """The blind tamper model file is missing or does not fit this version's features."""


def log_compress(features: np.ndarray) -> np.ndarray:
    """Signed log1p: heavy-tailed forensic statistics on a scale a linear model can use."""
    return np.sign(features) * np.log1p(np.abs(features))


@dataclass(frozen=True)
class BlindModel:
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def score(self, features: np.ndarray) -> float:
        z = (log_compress(features) - self.mean) / self.scale
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
    return BlindModel(
        np.array(doc["mean"]), np.array(doc["scale"]), np.array(doc["weights"]), float(doc["bias"])
    )


def blind_tamper_score(rgb: np.ndarray) -> float:
    """Probability-like score in [0, 1] that ``rgb`` was locally tampered with."""
    return load_model().score(forensic_features(rgb))
