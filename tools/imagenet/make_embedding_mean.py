"""Write src/blockimage/analysis/embedding_mean.json: the mean image descriptor, for centring.

The global embedding (:mod:`blockimage.analysis.embedding`) centres the backbone's pooled,
square-rooted, L2-normalised features before projecting them, so that the signs of the
projection (the 256-bit sketch searched first) split images evenly. The centre is the mean of
that descriptor over real photographs available offline: scikit-image's sample photos, and
Debian's ``opencv-doc`` sample photos and every fifth frame of its three sample videos (street
scene, film clip, trees). A statistic of public sample data, computed once and shipped.

Usage: apt-get install opencv-doc && .venv/bin/python tools/imagenet/make_embedding_mean.py
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from blockimage.analysis.classifier import DEFAULT_BACKBONE, load_classifier
from blockimage.analysis.embedding import descriptor

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
OUT = Path(__file__).resolve().parents[2] / "src/blockimage/analysis/embedding_mean.json"


def images():
    import skimage.data

    root = Path(skimage.data.__file__).parent
    for path in sorted([*root.glob("*.png"), *root.glob("*.jpg"), *OPENCV.glob("*.jpg")]):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        if min(rgb.shape[:2]) >= 200:
            yield rgb
    for video in ("vtest.avi", "Megamind.avi", "tree.avi"):
        capture = cv2.VideoCapture(str(OPENCV / video))
        frame_no = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if frame_no % 5 == 0:
                yield np.ascontiguousarray(frame[:, :, ::-1])
            frame_no += 1


def main() -> None:
    if not OPENCV.is_dir():
        raise SystemExit(f"{OPENCV} is missing: apt-get install opencv-doc")
    classifier = load_classifier()
    rows = [descriptor(classifier.predict(rgb).features) for rgb in images()]
    mean = np.mean(rows, axis=0)
    OUT.write_text(
        json.dumps(
            {
                "backbone": DEFAULT_BACKBONE,
                "images": len(rows),
                "mean": [round(float(v), 6) for v in mean],
            }
        )
        + "\n"
    )
    print(f"wrote {OUT} from {len(rows)} images")


if __name__ == "__main__":
    main()
