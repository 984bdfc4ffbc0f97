"""Time of `analyze` (content tags + blind tamper score) per 1 MP image, model loaded once.

Baseline in the same run: decoding the image (the work every command does anyway). Also shown
separately: the classifier alone (tags) and the forensic features alone.

Usage: .venv/bin/python benchmarks/analyze.py [--images N]
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

from blockimage.analysis import analyze_image  # noqa: E402
from blockimage.analysis.classifier import load_classifier  # noqa: E402
from blockimage.analysis.forensics import forensic_features  # noqa: E402
from blockimage.imaging import decode_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    files = []
    for path in (photo_paths() * 4)[: args.images]:
        buf = io.BytesIO()
        Image.open(path).convert("RGB").resize((1155, 866), Image.Resampling.LANCZOS).save(
            buf, "JPEG", quality=90
        )
        files.append(buf.getvalue())
    t0 = time.perf_counter()
    classifier = load_classifier()
    print(f"model load (once per process): {(time.perf_counter() - t0) * 1000:.0f} ms")
    pixels = [decode_image(f).pixels for f in files]
    analyze_image(pixels[0])  # warm-up
    rows = {
        "baseline: decode": lambda i: decode_image(files[i]),
        "tags only (classifier)": lambda i: classifier.tags(classifier.predict(pixels[i])),
        "forensic features only": lambda i: forensic_features(pixels[i]),
        "analyze (tags + blind score)": lambda i: analyze_image(pixels[i]),
    }
    print(f"{len(files)} JPEG photos of 1155x866 (1.0 MP)")
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


if __name__ == "__main__":
    main()
