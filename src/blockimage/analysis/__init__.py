"""AI metadata of an image: content tags (ImageNet CNN) and blind forensic evidence.

``analyze_image`` runs the classifier (tags) beside the forensics (:func:`blind_evidence`);
the models load once per process.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imaging import InvalidImageError, is_lossless, jpeg_luma, probe_image
from ..records import BlindEvidence, Tag
from .blind import ModelNotFoundError, load_model
from .classifier import DEFAULT_MODEL, load_classifier
from .forensics import MIN_SIDE, examine, forensics_possible

__all__ = [
    "Analysis",
    "MIN_SIDE",
    "analyze_image",
    "blind_evidence",
    "ModelNotFoundError",
]


@dataclass(frozen=True)
class Analysis:
    tags: tuple[Tag, ...]
    blind: BlindEvidence | None  # None: too small for the forensics
    model: str  # the backbone that gave the tags

    @property
    def blind_tamper_score(self) -> float | None:
        return None if self.blind is None else self.blind.score


_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blockimage-analysis")


def analyze_image(
    rgb: np.ndarray, tag_model: Path = DEFAULT_MODEL, *, data: bytes | None = None
) -> Analysis:
    """Content tags (from ``tag_model``) and the blind evidence of an RGB uint8 image;
    ``data``: its file's bytes, when there is a file (a JPEG's coefficients are read from it).

    The classifier runs in a worker thread while the forensics run here: onnxruntime, OpenCV
    and NumPy release the GIL, so on two cores the two overlap.
    """
    tagger = load_classifier(tag_model)
    pending = _POOL.submit(tagger.predict, rgb)
    blind = blind_evidence(rgb, data)
    return Analysis(tagger.tags(pending.result()), blind, tagger.name)


def blind_evidence(rgb: np.ndarray, data: bytes | None = None) -> BlindEvidence | None:
    """The blind tamper score of ``rgb`` with its cross-validated error rates, the findings and
    the heat map; None for an image too small to judge (under ``MIN_SIDE`` pixels a side at
    the working resolution). ``data``: the file's bytes, if any."""
    if not forensics_possible(rgb):
        return None
    luma, lossless = None, True  # an array: its pixels are all there is
    if data is not None:
        pixels = rgb.shape[0] * rgb.shape[1]
        try:
            fmt = probe_image(data, max_pixels=pixels)[0]
            luma = jpeg_luma(data, max_pixels=pixels) if fmt == "JPEG" else None
            lossless = is_lossless(fmt, data)
        except InvalidImageError:  # decoded once already; judge the pixels without the file
            lossless = False
    found = examine(rgb, luma, lossless=lossless)
    model = load_model()
    score = round(model.score(found.features), 3)
    rates = model.error_rates(score)
    heat_map = None
    if float(found.heat.max()) > 0.0:  # a region was named
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.round(found.heat * 255).astype(np.uint8), "L").save(buf, "PNG")
        heat_map = buf.getvalue()
    return BlindEvidence(
        score=score,
        threshold=rates.threshold,
        false_positive_rate=rates.false_positive_rate,
        true_positive_rate=rates.true_positive_rate,
        findings=found.findings,
        heat_map=heat_map,
    )
