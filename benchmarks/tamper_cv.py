"""Blind tamper detector: build a synthetic set, run stratified group 5-fold CV, write the model.

The set is built from real photos available offline (benchmarks/photos.py): for every photo,
tampered copies (copy-move, splice from another photo, object removal by inpainting, painted
shape, text; random places and sizes) and untouched copies, then both given the same benign
processing (JPEG re-save at q75-95, and half of them first resized to 60-95 %), so that the
processing cannot stand in for the label. Every random
choice is seeded. Folds are grouped by source photo (StratifiedGroupKFold): no photo appears in
both training and test data.

The classifier is a logistic regression on standardised, log-compressed forensic features
(:mod:`blockimage.analysis.forensics`) and the frozen EfficientNet-Lite0 backbone's pooled
features reduced to 16 principal components (fitted inside each training fold).
``--write-model`` fits it on the whole set and writes
``src/blockimage/analysis/blind_model.json``, which ``blockimage analyze`` loads.

The figures come from this synthetic set and are not comparable with results on CASIA,
Columbia or other forensic benchmarks.

Usage: .venv/bin/python benchmarks/tamper_cv.py [--per-photo N] [--write-model]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from photos import load, photo_paths  # noqa: E402

from blockimage.analysis.blind import MODEL_PATH, log_compress  # noqa: E402
from blockimage.analysis.classifier import load_classifier  # noqa: E402
from blockimage.analysis.forensics import FEATURE_NAMES, forensic_features  # noqa: E402
from blockimage.evaluation import TAMPER_KINDS, jpeg_roundtrip, tampered_variant  # noqa: E402

_PCA = 16  # principal components kept of the backbone's 1280 pooled features


def benign(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = img
    if rng.random() < 0.5:
        h, w = img.shape[:2]
        f = rng.uniform(0.6, 0.95)
        import cv2

        out = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return jpeg_roundtrip(out, int(rng.integers(75, 96)))


def _features(img: np.ndarray) -> np.ndarray:
    """Forensic features (log-compressed) followed by the backbone's pooled features."""
    cnn = load_classifier().predict(img).features
    return np.concatenate([log_compress(forensic_features(img)), cnn])


def build(per_photo: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    paths = photo_paths()
    photos = [load(p) for p in paths]
    features, labels, groups, kinds = [], [], [], []
    t0 = time.perf_counter()
    for g, img in enumerate(photos):
        donor = photos[(g + 1) % len(photos)]
        for k in range(per_photo):
            kind = TAMPER_KINDS[k % len(TAMPER_KINDS)]
            edit = tampered_variant(img, kind, rng, donor=donor, resave=False)
            # Both classes get the same benign processing, so it cannot stand in for the label.
            edited = benign(edit.pixels, rng)
            features.append(_features(edited))
            labels.append(1)
            groups.append(g)
            kinds.append(edit.kind.split("+")[0])
            features.append(_features(benign(img, rng)))
            labels.append(0)
            groups.append(g)
            kinds.append("benign")
    elapsed = time.perf_counter() - t0
    print(
        f"{len(labels)} images from {len(photos)} photos; features in {elapsed:.0f} s "
        f"({elapsed / len(labels) * 1000:.0f} ms per image)"
    )
    return np.array(features), np.array(labels), np.array(groups), kinds


def main() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
    )
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-photo", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write-model", action="store_true")
    parser.add_argument(
        "--model",
        choices=("logistic", "hgb"),
        default="logistic",
        help="hgb: gradient boosting, for comparison only (not shippable)",
    )
    args = parser.parse_args()
    x, y, groups, kinds = build(args.per_photo, args.seed)
    nf = len(FEATURE_NAMES)

    def model():
        if args.model == "hgb":
            from sklearn.ensemble import HistGradientBoostingClassifier

            return HistGradientBoostingClassifier(
                max_iter=200, learning_rate=0.05, random_state=args.seed
            )
        columns = ColumnTransformer(
            [
                ("forensic", StandardScaler(), list(range(nf))),
                (
                    "cnn",
                    make_pipeline(StandardScaler(), PCA(_PCA, random_state=args.seed)),
                    list(range(nf, x.shape[1])),
                ),
            ]
        )
        return make_pipeline(columns, LogisticRegression(C=1.0, max_iter=2000))

    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=args.seed)
    rows, total = [], np.zeros((2, 2), dtype=int)
    predicted = np.zeros_like(y)
    for i, (train, test) in enumerate(folds.split(x, y, groups), 1):
        clf = model().fit(x[train], y[train])
        p = clf.predict(x[test])
        predicted[test] = p
        rows.append(
            (
                accuracy_score(y[test], p),
                precision_score(y[test], p, zero_division=0),
                recall_score(y[test], p),
                f1_score(y[test], p),
            )
        )
        total += confusion_matrix(y[test], p, labels=[0, 1])
        print(
            f"fold {i}: accuracy {rows[-1][0]:.3f}  precision {rows[-1][1]:.3f}  "
            f"recall {rows[-1][2]:.3f}  F1 {rows[-1][3]:.3f}  (test photos: "
            f"{len(set(groups[test]))})"
        )
    r = np.array(rows)
    print(
        "\nmean +- std: "
        + "  ".join(
            f"{name} {r[:, j].mean():.3f} +- {r[:, j].std():.3f}"
            for j, name in enumerate(("accuracy", "precision", "recall", "F1"))
        )
    )
    print(f"confusion (rows truth benign/tampered, columns predicted): {total.tolist()}")
    kinds_arr = np.array(kinds)
    correct = {k: np.mean(predicted[kinds_arr == k] == (k != "benign")) for k in set(kinds)}
    print("correct by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(correct.items())))
    if args.write_model:
        clf = model().fit(x, y)
        columns, lr = clf[0], clf[1]
        forensic = columns.named_transformers_["forensic"]
        cnn_scaler, pca = (
            columns.named_transformers_["cnn"][0],
            columns.named_transformers_["cnn"][1],
        )
        doc = {
            "about": "Blind tamper detector: logistic regression on standardised, log-compressed "
            "forensic features and the backbone's pooled features (standardised, PCA). "
            "Trained by benchmarks/tamper_cv.py on a synthetic set.",
            "features": list(FEATURE_NAMES),
            "forensic_mean": forensic.mean_.tolist(),
            "forensic_scale": forensic.scale_.tolist(),
            "cnn_mean": cnn_scaler.mean_.tolist(),
            "cnn_scale": cnn_scaler.scale_.tolist(),
            "pca_mean": pca.mean_.tolist(),
            "pca_components": pca.components_.round(6).tolist(),
            "weights": lr.coef_[0].tolist(),
            "bias": float(lr.intercept_[0]),
            "trained_on": {
                "images": int(len(y)),
                "photos": int(len(set(groups.tolist()))),
                "seed": args.seed,
                "cv_f1_mean": float(r[:, 3].mean()),
            },
        }
        MODEL_PATH.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"model written to {MODEL_PATH}")


if __name__ == "__main__":
    main()
