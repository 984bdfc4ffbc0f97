"""Throughput of register and verify on 1 MP photos, and of CID computation vs raw SHA-256.

verify is timed for exact matches, for re-encoded and for locally edited copies (found by the
watermark, then compared with the stored original) and for unregistered photos.
Baselines measured in the same run:
- register / verify are set beside "decode + SHA-256", the work no implementation can skip;
- the UnixFS CID importer is set beside hashlib.sha256 over the same 50 MB buffer.

Usage: .venv/bin/python benchmarks/register.py [--images N]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from blockimage import Node
from blockimage.demo import sample_photos
from blockimage.evaluation import tampered_variant
from blockimage.imaging import decode_image
from blockimage.storage.unixfs import cid_for_bytes


def one_megapixel_photos(n: int, workdir: Path) -> list[Path]:
    """n distinct ~1 MP JPEGs made from the sample photos (different photo, crop, flip)."""
    sources = [np.asarray(Image.open(p).convert("RGB")) for p, _ in sample_photos()]
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        k = i // len(sources)
        h, w = src.shape[:2]
        crop = src[k * 7 % (h // 4) :, k * 11 % (w // 4) :]
        if k % 2:
            crop = crop[:, ::-1]
        img = Image.fromarray(np.ascontiguousarray(crop)).resize((1155, 866), Image.LANCZOS)
        path = workdir / f"photo{i:03d}.jpg"
        img.save(path, "JPEG", quality=92)
        paths.append(path)
    return paths


def timed(fn, items):
    times = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t0)
    return times


def report(name: str, times: list[float]) -> None:
    rate = len(times) / sum(times)
    median = statistics.median(times) * 1000
    p95 = sorted(times)[int(0.95 * (len(times) - 1))] * 1000
    print(f"{name:<34} {rate:8.1f} images/s   median {median:6.1f} ms   p95 {p95:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        photos = one_megapixel_photos(args.images, work / "in")
        print(f"{len(photos)} JPEG photos of 1155x866 (1.0 MP)\n")
        baseline = timed(
            lambda p: hashlib.sha256(decode_image(p.read_bytes()).pixels).digest(), photos
        )
        report("baseline: decode + SHA-256", baseline)
        with Node(work / "home") as node:
            outputs: list[Path] = []

            def register(path: Path) -> None:
                receipt = node.register(path, owner="bench", out=work / "out")
                outputs.append(Path(str(receipt.output)))

            reg = timed(register, photos)
            report("register", reg)
            ver = timed(node.verify, outputs)
            report("verify (exact match)", ver)
            reencoded = []
            for p in outputs:
                buf = io.BytesIO()
                Image.open(p).save(buf, "JPEG", quality=80)
                reencoded.append(buf.getvalue())
            ver2 = timed(node.verify, reencoded)
            report("verify (re-encoded: find+compare)", ver2)
            rng = np.random.default_rng(5)
            edited = [
                _jpeg(tampered_variant(np.asarray(Image.open(p).convert("RGB")), "paint", rng))
                for p in outputs
            ]
            report("verify (tampered: find+compare)", timed(node.verify, edited))
            ver3 = timed(node.verify, [_unrelated(i) for i in range(10)])
            report("verify (unregistered)", ver3)

    data = np.random.default_rng(0).integers(0, 256, 50 * 1024 * 1024, dtype=np.uint8).tobytes()
    best_sha = min(_seconds(lambda: hashlib.sha256(data).digest()) for _ in range(3))
    best_cid = min(_seconds(lambda: cid_for_bytes(data)) for _ in range(3))
    mb = len(data) / 1e6
    print(
        f"\nCID of a 50 MB buffer: {mb / best_cid:7.0f} MB/s   "
        f"raw hashlib SHA-256: {mb / best_sha:7.0f} MB/s   ratio {best_sha / best_cid:.2f}"
    )


def _unrelated(i: int) -> bytes:
    rng = np.random.default_rng(100 + i)
    field = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
    img = Image.fromarray(field).resize((1155, 866), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _jpeg(variant) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(variant.pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
