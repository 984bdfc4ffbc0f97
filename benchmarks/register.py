"""Throughput of register and verify on 1 MP photos and on camera-size photos (12 and 24 MP),
batches on several cores, the CLI's start-up, and CID computation vs raw SHA-256.

verify is timed for exact matches, for re-encoded and for locally edited copies (found by the
watermark, then compared with the stored original) and for unregistered photos.
Baselines measured in the same run:
- register / verify are set beside "decode + SHA-256", the work no implementation can skip;
- camera-size registration beside decode + SHA-256 + JPEG q95 encode of the same file, with the
  peak RSS of a process that registers one photo (budget: 6 x the decoded RGB + 300 MB);
- a batch on 2 worker processes beside the same batch on 1;
- the UnixFS CID importer is set beside hashlib.sha256 over the same 50 MB buffer.
Camera-size photos are real photos upscaled (Lanczos): no 12 MP photo ships in a package here.

Usage: .venv/bin/python benchmarks/register.py [--images N] [--camera 1,12,24]
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
    parser.add_argument("--camera", default="1,12,24", help="megapixels, comma-separated")
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
            steps(node, photos, statistics.median(reg))
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
            credentials(node, photos)

    camera(sorted(float(m) for m in args.camera.split(",") if m))
    batches()

    data = np.random.default_rng(0).integers(0, 256, 50 * 1024 * 1024, dtype=np.uint8).tobytes()
    best_sha = min(_seconds(lambda: hashlib.sha256(data).digest()) for _ in range(3))
    best_cid = min(_seconds(lambda: cid_for_bytes(data)) for _ in range(3))
    mb = len(data) / 1e6
    print(
        f"\nCID of a 50 MB buffer: {mb / best_cid:7.0f} MB/s   "
        f"raw hashlib SHA-256: {mb / best_sha:7.0f} MB/s   ratio {best_sha / best_cid:.2f}"
    )


def steps(node: Node, photos: list[Path], whole: float) -> None:
    """Where a 1 MP registration's time goes: each step of the flow timed alone on the same
    photos, in the order the flow runs them (medians, one core). What the steps do not
    cover (storage, the ledger's append, the derived indexes, the record) is the rest."""
    from blockimage import watermark
    from blockimage.analysis.classifier import load_classifier
    from blockimage.credentials import record_manifest, sign
    from blockimage.fingerprint import pdq_hash, pixel_sha256
    from blockimage.imaging import encode_image, work_image
    from blockimage.keypoints import signature
    from blockimage.quality import ssim

    key = node.keys.watermark_key()
    identity = node.keys.c2pa_identity()
    classifier = load_classifier()
    rows: list[tuple[str, float]] = []

    def step(name: str, fn, items: list) -> list:
        results, times = [], []
        for item in items:
            t0 = time.perf_counter()
            results.append(fn(item))
            times.append(time.perf_counter() - t0)
        rows.append((name, statistics.median(times)))
        return results

    files = [p.read_bytes() for p in photos]
    each = list(range(len(photos)))  # the steps that take two lists go by index
    pixels = step("decode the submitted file", lambda d: decode_image(d).pixels, files)
    works = step("its work image (768 px)", work_image, pixels)
    canon = step("its canonical luma (512 x 512)", watermark.canonical_luma, pixels)
    step("duplicate check: SHA-256 of the pixels", pixel_sha256, pixels)
    step("duplicate check: PDQ", pdq_hash, works)
    step("duplicate check: read a mark",
         lambda i: watermark.extract_details(pixels[i], key, sync=False, canonical=canon[i]),
         each)  # fmt: skip
    marked = step("embed the mark",
                  lambda i: watermark.embed(pixels[i], 7 + i, key, canonical=canon[i]),
                  each)  # fmt: skip
    coded = step("encode JPEG q95 4:4:4", lambda m: encode_image(m, "JPEG"), marked)
    saved = step("decode the saved file", lambda d: decode_image(d).pixels, coded)
    step("read the mark back", lambda s: watermark.extract_details(s, key, sync=False), saved)
    saved_works = step("the saved file's work image", work_image, saved)
    step("SSIM of the work images", lambda i: ssim(works[i], saved_works[i]),
         each)  # fmt: skip
    step("PDQ of the registered picture", pdq_hash, saved_works)
    manifest = record_manifest(record_id="0123456789abcdef", title="t", owner="bench",
                               log_origin="b", parent=None, pdq="5a" * 32)  # fmt: skip
    step("sign the Content Credentials",
         lambda d: sign(d, "image/jpeg", manifest, identity, submitted=(d, "image/jpeg", "x")),
         coded)  # fmt: skip
    step("SHA-256 of the registered file and pixels",
         lambda i: (hashlib.sha256(coded[i]).digest(), pixel_sha256(saved[i])),
         each)  # fmt: skip
    step("classifier (tags and embedding)", classifier.predict, saved_works)
    step("ORB keypoints", signature, saved_works)
    total = sum(t for _, t in rows)
    print("  where the time goes (each step alone, median):")
    for name, seconds in rows:
        print(f"    {name:<44} {seconds * 1000:6.1f} ms")
    print(f"    {'sum of the steps':<44} {total * 1000:6.1f} ms")
    print(f"    {'the rest (storage, ledger, indexes, record)':<44} "
          f"{(whole - total) * 1000:6.1f} ms (register's median - the sum)")  # fmt: skip


def credentials(node: Node, photos: list[Path]) -> None:
    """Content Credentials on 1 MP JPEGs: the manifest written (c2pa-rs, thumbnail off) and
    read + validated, beside the baseline of a plain copy of the file's bytes."""
    from blockimage.credentials import manifest_store, read, record_manifest, sign

    identity = node.keys.c2pa_identity()
    anchors = identity.anchor_pem.decode()
    signed: list[bytes] = []

    def write(path: Path) -> None:
        data = path.read_bytes()
        manifest = record_manifest(
            record_id="0123456789abcdef", title=path.name, owner="bench", log_origin="b",
            parent=None, pdq="5a" * 32,
        )  # fmt: skip
        signed.append(
            sign(data, "image/jpeg", manifest, identity, submitted=(data, "image/jpeg", "x"))
        )

    print("\nContent Credentials (C2PA) on the 1 MP JPEGs (targets: 10 ms each)")
    report("baseline: read the file", timed(lambda p: bytes(p.read_bytes()), photos))
    report("manifest write (sign)", timed(write, photos))
    report("manifest read + validate", timed(lambda d: read(d, "image/jpeg", anchors=anchors),
                                               signed))  # fmt: skip
    report("manifest store read out (GET /manifests)", timed(manifest_store, signed))


# The peak is the process's own high-water mark (VmHWM): ru_maxrss would also count the
# benchmark's RSS at the fork (Linux keeps the larger across exec).
_ONE_REGISTRATION = """
import os, sys, time, resource
from blockimage import Node
node = Node(sys.argv[1])
node.verify(sys.argv[3])  # models loaded and indexes opened before the clock starts
t0 = time.perf_counter()
node.register(sys.argv[2], owner="bench", out=sys.argv[1] + "-out")
seconds = time.perf_counter() - t0
try:
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except OSError:
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, peak_kb)
"""


def camera(sizes: list[float]) -> None:
    """Register camera-size JPEGs, each in a process of its own (time and peak memory)."""
    import subprocess
    import sys

    print("\ncamera-size photos (JPEG q92, upscaled from a real photo; one process each)")
    source = np.asarray(Image.open(sample_photos()[1][0]).convert("RGB"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        warm = work / "warm.jpg"
        Image.fromarray(source).save(warm, "JPEG", quality=90)
        for mp in sizes:
            h, w = source.shape[:2]
            scale = (mp * 1e6 / (h * w)) ** 0.5
            size = (round(w * scale), round(h * scale))
            path = work / f"photo-{mp:g}mp.jpg"
            big = Image.fromarray(source).resize(size, Image.Resampling.LANCZOS)
            big.save(path, "JPEG", quality=92)
            rgb_mb = size[0] * size[1] * 3 / 1e6
            floor = []
            for _ in range(3):
                t0 = time.perf_counter()
                pixels = decode_image(path.read_bytes(), max_pixels=10**9).pixels
                hashlib.sha256(pixels).digest()
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, "JPEG", quality=95, subsampling=0)
                floor.append(time.perf_counter() - t0)
                del pixels
            runs = []
            for i in range(3):
                home = work / f"home-{mp:g}-{i}"
                done = subprocess.run(
                    [sys.executable, "-c", _ONE_REGISTRATION, str(home), str(path), str(warm)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                seconds, peak_kb = done.stdout.split()
                runs.append((float(seconds), int(peak_kb) / 1024))
            median = statistics.median(r[0] for r in runs)
            base = statistics.median(floor)
            peak = max(r[1] for r in runs)
            budget = 6 * rgb_mb + 300
            print(
                f"{mp:4g} MP ({size[0]}x{size[1]}): register median {median * 1000:7.0f} ms   "
                f"baseline (decode + SHA-256 + JPEG q95) {base * 1000:6.0f} ms   "
                f"ratio {median / base:4.1f}   peak RSS {peak:5.0f} MB (budget {budget:.0f} MB)"
            )
            if mp == max(sizes) or mp == 12:
                _verify_reencoded(work, path, mp)


def _verify_reencoded(work: Path, path: Path, mp: float) -> None:
    with Node(work / f"verify-{mp:g}") as node:
        receipt = node.register(path, owner="bench", out=work / "out")
        buf = io.BytesIO()
        Image.open(str(receipt.output)).save(buf, "JPEG", quality=80)
        node.verify(buf.getvalue())  # warm
        times = timed(node.verify, [buf.getvalue()] * 3)
        print(f"     verify of a re-encoded {mp:g} MP copy: median "
              f"{statistics.median(times) * 1000:.0f} ms")  # fmt: skip


def batches(count: int = 48, warm: int = 8) -> None:
    """The same photos of 1 MP registered through the CLI on 1 and on 2 worker processes.

    Two rates each: the whole batch by the wall clock (the start of the CLI, of its workers
    and of their models included), and the steady rate once running, from the CLI's line for
    image ``warm`` to its line for the last one (one line per image on stderr: before each
    image on one worker, after each on several). Also prints the CPU time of the one-worker
    run: one process already keeps more than one core busy part of the time (OpenCV's and the
    BLAS's threads), which bounds what a second worker can add on two cores."""
    import resource
    import subprocess
    import sys

    print(f"\nbatches through the CLI ({count} photos of 1 MP)")
    whole, steady = {}, {}
    for jobs in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "in").mkdir()
            photos = one_megapixel_photos(count, work / "in")
            command = [str(Path(sys.executable).with_name("blockimage")), "--home",
                       str(work / "home"), "register", *map(str, photos), "--owner", "bench",
                       "--out", str(work / "out"), "--jobs", str(jobs)]  # fmt: skip
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            lines: list[float] = []
            with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) as cli:  # fmt: skip
                assert cli.stderr is not None
                for line in cli.stderr:
                    if line.startswith("["):
                        lines.append(time.perf_counter())
            if cli.returncode != 0 or len(lines) != count:
                raise SystemExit(f"the batch on {jobs} worker(s) failed ({cli.returncode})")
            whole[jobs] = count / (time.perf_counter() - t0)
            steady[jobs] = (count - warm) / (lines[-1] - lines[warm - 1])
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            wall = count / whole[jobs]
            print(f"--jobs {jobs}: {whole[jobs]:5.2f} images/s ({wall:.1f} s, CPU {cpu:.1f} s = "
                  f"{cpu / wall:.2f} cores busy); once running (images {warm}-{count}): "
                  f"{steady[jobs]:5.2f} images/s")  # fmt: skip
    print(f"speed-up with 2 workers: {whole[2] / whole[1]:.2f}x the whole batch, "
          f"{steady[2] / steady[1]:.2f}x once running (target 1.7x)")  # fmt: skip
    floor = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("blockimage")), "--help"],
                       check=True, capture_output=True)  # fmt: skip
        floor.append(time.perf_counter() - t0)
    print(f"CLI --help: median {statistics.median(floor) * 1000:.0f} ms (target 300 ms)")


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
