"""Verification accuracy on real photos: benign vs tampered verdicts, region IoU, pixel F1, speed.

Every photo (long side 1024 px, about 0.5-1 MP) is registered in a fresh node; then each benign
variant (re-encodings, resizes, tone and colour changes, a small crop) and each tampered
variant (copy-move, splice, object removal, painted shape, text; random places and sizes;
half of them re-saved as JPEG) is verified through the full path (watermark or PDQ lookup,
fetch of the stored original, comparison). Deterministic: every random choice is seeded.

Prints verdict accuracy, the confusion matrix, the share of tampered cases with a reported
region of box IoU >= 0.3 against the true one, mean pixel F1 of the mask, and verify time.

Usage: .venv/bin/python benchmarks/verify_eval.py [--photos N] [--seed S]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from photos import load, photo_paths  # noqa: E402

from blockimage import Node  # noqa: E402
from blockimage.evaluation import (  # noqa: E402
    BENIGN_KINDS,
    TAMPER_KINDS,
    Variant,
    benign_variant,
    tampered_variant,
)

LABELS = ("authentic", "benign", "tampered", "unknown")


def encode(v: Variant) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(v.pixels).save(buf, v.fmt, quality=v.quality)
    return buf.getvalue()


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=0)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    paths = photo_paths()[: args.photos or None]
    rng = np.random.default_rng(args.seed)
    confusion: Counter[tuple[str, str]] = Counter()
    per_kind: dict[str, Counter[str]] = {}
    found_by: dict[str, Counter[str]] = {}  # benign kinds: which evidence found the record
    ious, f1s, times, megapixels = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp, Node(Path(tmp) / "home") as node:
        registered = []
        for path in paths:
            src = Path(tmp) / f"{path.stem}.png"
            Image.fromarray(load(path)).save(src)
            receipt = node.register(src, owner="eval")
            registered.append(np.asarray(Image.open(receipt.output).convert("RGB")))
        for i, img in enumerate(registered):
            donor = load(paths[(i + 1) % len(paths)])
            cases = [(benign_variant(img, k), "benign") for k in BENIGN_KINDS]
            cases += [
                (tampered_variant(img, k, rng, donor=donor), "tampered") for k in TAMPER_KINDS
            ]
            for variant, truth in cases:
                data = encode(variant)
                t0 = time.perf_counter()
                verdict = node.verify(data)
                times.append(time.perf_counter() - t0)
                megapixels.append(variant.pixels.shape[0] * variant.pixels.shape[1] / 1e6)
                confusion[(truth, verdict.verdict)] += 1
                kind = variant.kind.split("+")[0] if truth == "tampered" else variant.kind
                per_kind.setdefault(kind, Counter())[verdict.verdict] += 1
                if truth != "tampered":
                    found_by.setdefault(kind, Counter())[str(verdict.matched_by)] += 1
                    continue
                ys, xs = np.nonzero(variant.mask)
                true_box = (
                    int(xs.min()),
                    int(ys.min()),
                    int(xs.max() - xs.min() + 1),
                    int(ys.max() - ys.min() + 1),
                )
                best = max(
                    (box_iou((r.x, r.y, r.w, r.h), true_box) for r in verdict.regions), default=0.0
                )
                ious.append(best)
                if verdict.mask is not None:
                    found = np.asarray(Image.open(io.BytesIO(verdict.mask)).convert("L")) > 0
                    tp = float((found & variant.mask).sum())
                    f1s.append(2 * tp / (found.sum() + variant.mask.sum()))
                else:
                    f1s.append(0.0)
    total = sum(confusion.values())
    correct = sum(n for (t, p), n in confusion.items() if t == p)
    benign_total = sum(n for (t, _), n in confusion.items() if t == "benign")
    print(f"{len(paths)} photos, {total} verifications (seed {args.seed})\n")
    print("confusion (rows: truth, columns: verdict)")
    print(f"{'':<10}" + "".join(f"{label:>11}" for label in LABELS))
    for truth in ("benign", "tampered"):
        print(f"{truth:<10}" + "".join(f"{confusion[(truth, p)]:>11}" for p in LABELS))
    print("\nper kind: " + "; ".join(f"{k} {dict(c)}" for k, c in sorted(per_kind.items())))
    print("\nbenign kinds found by the watermark (the rest: matched_by)")
    for kind, by in sorted(found_by.items()):
        share = by["watermark"] / max(sum(by.values()), 1)
        print(f"  {kind:<22} {share:6.1%}   {dict(by)}")
    print(f"\nverdict accuracy                 {correct / total:.1%}")
    print(
        f"benign called tampered           {confusion[('benign', 'tampered')] / benign_total:.1%}"
    )
    print(f"tampered with region IoU >= 0.3  {np.mean(np.array(ious) >= 0.3):.1%}")
    print(f"mean box IoU / pixel F1          {np.mean(ious):.3f} / {np.mean(f1s):.3f}")
    per_mp = [t / mp for t, mp in zip(times, megapixels, strict=True)]
    print(
        f"verify time                      median {statistics.median(times) * 1000:.0f} ms, "
        f"p95 {sorted(times)[int(0.95 * (len(times) - 1))] * 1000:.0f} ms "
        f"(median {statistics.median(per_mp) * 1000:.0f} ms per megapixel)"
    )


if __name__ == "__main__":
    main()
