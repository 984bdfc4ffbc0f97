"""Time of `analyze` (content tags + blind evidence) per 1 MP image, model loaded once.

Baseline in the same run: decoding the image (the work every command does anyway). Also shown
separately: the classifier alone (tags) and the blind forensics alone (reading the JPEG's
coefficients included). The photos are JPEGs saved twice (quality 75, then 90), as most
published photos are, so the double-compression analysis runs in full. ``--camera``: the same
at 12 MP (photos upscaled to 4000 x 3000: no 12 MP photo ships in the packages here).

Usage: .venv/bin/python benchmarks/analyze.py [--images N] [--camera N]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from photos import photo_paths  # noqa: E402

from blockimage.analysis import analyze_image, blind_evidence  # noqa: E402
from blockimage.analysis.classifier import load_classifier  # noqa: E402
from blockimage.imaging import decode_image  # noqa: E402


def _twice(img: Image.Image) -> bytes:
    first = io.BytesIO()
    img.save(first, "JPEG", quality=75)
    second = io.BytesIO()
    Image.open(first).save(second, "JPEG", quality=90)
    return second.getvalue()


def _table(title: str, files: list[bytes]) -> None:
    classifier = load_classifier()
    pixels = [decode_image(f).pixels for f in files]
    analyze_image(pixels[0], data=files[0])  # warm-up
    rows = {
        "baseline: decode": lambda i: decode_image(files[i]),
        "tags only (classifier)": lambda i: classifier.tags(classifier.predict(pixels[i])),
        "blind forensics only": lambda i: blind_evidence(pixels[i], files[i]),
        "analyze (tags + blind evidence)": lambda i: analyze_image(pixels[i], data=files[i]),
    }
    print(title)
    for name, fn in rows.items():
        times = []
        for i in range(len(files)):
            t0 = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - t0)
        print(
            f"{name:<32} median {statistics.median(times) * 1000:6.1f} ms   "
            f"p95 {sorted(times)[int(0.95 * (len(times) - 1))] * 1000:6.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--camera", type=int, default=3, help="12 MP photos (0: none)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    load_classifier()
    print(f"model load (once per process): {(time.perf_counter() - t0) * 1000:.0f} ms")
    paths = photo_paths()
    small = [
        _twice(Image.open(p).convert("RGB").resize((1155, 866), Image.Resampling.LANCZOS))
        for p in (paths * 4)[: args.images]
    ]
    _table(f"{len(small)} JPEG photos of 1155x866 (1.0 MP), saved at quality 75 then 90", small)
    if args.camera:
        large = [
            _twice(Image.open(p).convert("RGB").resize((4000, 3000), Image.Resampling.LANCZOS))
            for p in paths[: args.camera]
        ]
        _table(f"\n{len(large)} JPEG photos of 4000x3000 (12 MP, upscaled), same saves", large)


if __name__ == "__main__":
    main()
