"""The blind tamper score: how likely an image was locally edited, judged from itself alone.

A logistic regression over the forensic evidence of :mod:`.forensics` (log-compressed,
standardised), trained by ``benchmarks/tamper_cv.py`` and shipped as ``blind_model.json``
(plain numbers: no pickles, no scikit-learn at run time), with the error rates it had in
cross-validation at each threshold, so that a score is always stated with them. Use it for
images with no registered original; with an original, ``verify``'s comparison is far stronger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import BlockImageError
from .forensics import FEATURE_NAMES

__all__ = [
    "MODEL_PATH",
    "BlindModel",
    "ErrorRates",
    "ModelNotFoundError",
    "load_model",
    "log_compress",
]

MODEL_PATH = Path(__file__).with_name("blind_model.json")
_FPR, _TPR = "false_positive_rate", "true_positive_rate"


class ModelNotFoundError(BlockImageError, FileNotFoundError):
    """A model file is missing or does not fit this version's features."""


def log_compress(features: np.ndarray) -> np.ndarray:
    """Signed log1p: heavy-tailed forensic statistics on a scale a linear model can use."""
    return np.sign(features) * np.log1p(np.abs(features))


@dataclass(frozen=True)
class ErrorRates:
    """Out-of-fold rates in cross-validation at ``threshold``: the shares of untouched
    (``false_positive_rate``) and of edited images (``true_positive_rate``) that scored at
    least this."""

    threshold: float
    false_positive_rate: float
    true_positive_rate: float


@dataclass(frozen=True)
class BlindModel:
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # len(FEATURE_NAMES)
    bias: float
    operating_points: tuple[ErrorRates, ...]  # by increasing threshold

    def score(self, forensic: np.ndarray) -> float:
        z = (log_compress(forensic) - self.mean) / self.scale
        return float(1.0 / (1.0 + np.exp(-(z @ self.weights + self.bias))))

    def error_rates(self, score: float) -> ErrorRates:
        """The rates at the highest threshold the score reaches (the lowest if none)."""
        reached = [p for p in self.operating_points if p.threshold <= score]
        return reached[-1] if reached else self.operating_points[0]


@lru_cache(maxsize=4)
def load_model(path: Path = MODEL_PATH) -> BlindModel:
    """Load (once per process) the shipped model."""
    retrain = "`python benchmarks/tamper_cv.py --write-model`"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"blind tamper model {path} is missing; reinstall BlockImage, or train it with "
            f"{retrain}"
        ) from None
    if tuple(doc.get("features", ())) != FEATURE_NAMES or not doc.get("operating_points"):
        raise ModelNotFoundError(
            f"blind tamper model {path} was trained on other features; retrain it with {retrain}"
        )
    points = sorted(
        (
            ErrorRates(float(p["threshold"]), float(p[_FPR]), float(p[_TPR]))
            for p in doc["operating_points"]
        ),
        key=lambda p: p.threshold,
    )
    return BlindModel(
        mean=np.array(doc["mean"], dtype=np.float64),
        scale=np.array(doc["scale"], dtype=np.float64),
        weights=np.array(doc["weights"], dtype=np.float64),
        bias=float(doc["bias"]),
        operating_points=tuple(points),
    )
