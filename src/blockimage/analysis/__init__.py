"""AI metadata of an image: content tags (ImageNet CNN) and a blind tamper score.

``analyze_image`` runs the classifier once and derives both; the models load once per process.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..records import Tag
from .blind import ModelNotFoundError, load_model
from .classifier import DEFAULT_MODEL, Prediction, load_classifier
from .forensics import MIN_SIDE, forensic_features, forensics_possible

__all__ = [
    "Analysis",
    "MIN_SIDE",
    "analyze_image",
    "blind_tamper_score",
    "ModelNotFoundError",
]


@dataclass(frozen=True)
class Analysis:
    tags: tuple[Tag, ...]
    blind_tamper_score: float | None  # None: too small for the forensic features
    model: str  # the backbone that gave the tags


_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blockimage-analysis")


def analyze_image(rgb: np.ndarray, tag_model: Path = DEFAULT_MODEL) -> Analysis:
    """Content tags (from ``tag_model``) and blind tamper score of an RGB uint8 image.

    The blind model was trained on the default backbone's features, so the score always uses
    that backbone; a configured other backbone (``models import``) gives the tags. The
    classifier runs in a worker thread while the forensic features are computed here:
    onnxruntime and OpenCV release the GIL, so on two cores the two overlap.
    """
    classifier = load_classifier()
    tagger = load_classifier(tag_model)
    model = load_model()
    pending = _POOL.submit(classifier.predict, rgb)
    forensic = forensic_features(rgb) if forensics_possible(rgb) else None
    prediction = pending.result()
    score = None if forensic is None else round(model.score(forensic, prediction.features), 3)
    tagged = prediction if tagger is classifier else tagger.predict(rgb)
    return Analysis(tagger.tags(tagged), score, tagger.name)


def blind_tamper_score(rgb: np.ndarray, prediction: Prediction | None = None) -> float | None:
    """Probability-like score in [0, 1] that ``rgb`` was locally tampered with, or None for an
    image too small to judge (under ``MIN_SIDE`` pixels a side at the working resolution);
    ``prediction`` is the default backbone's output for ``rgb`` if the caller has it already."""
    if not forensics_possible(rgb):
        return None
    if prediction is None:
        return analyze_image(rgb).blind_tamper_score
    return round(load_model().score(forensic_features(rgb), prediction.features), 3)
