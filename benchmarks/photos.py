"""Real photographs available offline, for benchmarks: scikit-image's package data, and when
installed scikit-learn's and matplotlib's sample photos and Debian's opencv-doc photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")
_OPENCV_PHOTOS = (
    "aloeL.jpg",
    "building.jpg",
    "ela_original.jpg",
    "leuvenA.jpg",
    "baboon.jpg",
    "fruits.jpg",
    "aero1.jpg",
    "pca_test1.jpg",
    "squirrel_cls.jpg",
    "orange.jpg",
    "left.jpg",
    "home.jpg",
    "board.jpg",
    "stuff.jpg",
    "graf1.png",
)


def photo_paths() -> list[Path]:
    import skimage.data

    root = Path(skimage.data.__file__).parent
    paths = [
        root / n
        for n in (
            "astronaut.png",
            "coffee.png",
            "chelsea.png",
            "rocket.jpg",
            "motorcycle_left.png",
            "hubble_deep_field.jpg",
            "retina.jpg",
            "immunohistochemistry.png",
        )
    ]
    try:
        import sklearn.datasets

        sk = Path(sklearn.datasets.__file__).parent / "images"
        paths += [sk / "china.jpg", sk / "flower.jpg"]
    except ImportError:
        pass
    try:
        import matplotlib

        paths.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    except ImportError:
        pass
    paths += [OPENCV_DOC / n for n in _OPENCV_PHOTOS]
    return [p for p in paths if p.is_file()]


def load(path: Path, long_side: int = 1024) -> np.ndarray:
    """RGB uint8 with the long side resampled (Lanczos) to ``long_side``."""
    img = Image.open(path).convert("RGB")
    scale = long_side / max(img.size)
    size = (round(img.width * scale), round(img.height * scale))
    return np.asarray(img.resize(size, Image.Resampling.LANCZOS))
