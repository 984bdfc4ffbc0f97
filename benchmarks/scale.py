"""Archive scale: one node home grown to 10^3 ... 10^6 records, measured at each size.

The home is filled with synthetic records made by the project's own code: a distinct 64 x 64
noise picture per record (JPEG), stored in the embedded blockstore, fingerprinted (SHA-256,
PDQ), signed by an owner key and appended to the Merkle log in bulk (``append_many``). Real
photos are registered normally among them (``Node.register``), and each synthetic record also
gets a visual signature whose embedding is a distractor: a random combination of the centred
descriptors of real pictures the benchmark does not register (Debian's opencv-doc photos and
video frames, when installed; the held-out photos otherwise), so that the shortlist has to pick
the right photo out of a crowd with the covariance of real images. Synthetic records have no
keypoints (they would only cost disk).

At each size, in one run:
- node open (``Node(home)``), in-process, and the CLI's floor (``blockimage --help``);
- a PDQ query (FAISS over the mapped codes) beside the baseline numpy popcount scan of 0.1;
- a shortlist query of the keypoint matcher (sketch search + re-rank);
- verify in-process per kind over the registered photos: exact, JPEG 75, crop 10 % (each side,
  and all round), rotation 2 degrees both ways (borders cropped), unknown (held-out photos),
  with the found rate of crops and rotations;
- CLI commands end to end (verify exact / crop, history, get, export, register);
- audit (streamed; a child process, its time and peak RSS);
- disk per record.

Usage: .venv/bin/python benchmarks/scale.py [--sizes 1000,10000,100000,1000000] [--work DIR]
(10^6 takes about an hour on 2 cores, mostly filling; keep ~12 GB of disk free).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from photos import OPENCV_DOC, load, photo_paths  # noqa: E402

from blockimage import Node  # noqa: E402
from blockimage.analysis.classifier import load_classifier  # noqa: E402
from blockimage.analysis.embedding import (  # noqa: E402
    descriptor,
    descriptor_mean,
    embed_descriptors,
)
from blockimage.evaluation import signed_record, textured_picture  # noqa: E402
from blockimage.keypoints import Signature  # noqa: E402
from blockimage.matchers.keypoints import VisualIndex  # noqa: E402
from blockimage.matchers.pdq import PdqIndex  # noqa: E402
from blockimage.storage.local import LocalBlockstore  # noqa: E402

BI = [str(Path(sys.executable).with_name("blockimage"))]
EMPTY = Signature(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), 1.0)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def jpeg(pixels: np.ndarray, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=quality)
    return out.getvalue()


# -- distractors ----------------------------------------------------------------------------------
def distractor_source(held_out: list[np.ndarray]) -> np.ndarray:
    """Centred descriptors of real pictures that are not registered: opencv-doc video frames
    (every fifth) when installed, and the held-out photos."""
    classifier = load_classifier()
    pictures = list(held_out)
    for video in ("vtest.avi", "Megamind.avi", "tree.avi"):
        capture = cv2.VideoCapture(str(OPENCV_DOC / video))
        frame_no = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if frame_no % 5 == 0:
                pictures.append(np.ascontiguousarray(frame[:, :, ::-1]))
            frame_no += 1
    rows = [descriptor(classifier.predict(p).features) for p in pictures]
    print(f"distractors: random combinations of {len(rows)} real pictures' descriptors")
    return np.array(rows) - descriptor_mean()


def distractor_embeddings(source: np.ndarray, n: int, rng: np.random.Generator) -> list:
    z = rng.standard_normal((n, len(source))) / np.sqrt(len(source))
    desc = descriptor_mean() + z @ source
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    return embed_descriptors(desc)


# -- filling --------------------------------------------------------------------------------------
def fill(home: Path, node: Node, count: int, source: np.ndarray, rng: np.random.Generator) -> None:
    """Append ``count`` synthetic records (in batches), each with a distractor signature."""
    store = LocalBlockstore(home / "blocks", fsync=False)  # the same blocks, written faster
    key = node.keys.owner_key("archive")
    visual = VisualIndex(home / "index")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = 0
    while done < count:
        n = min(10_000, count - done)
        records = []
        for _ in range(n):
            noise = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            pixels = cv2.resize(noise, (64, 64), interpolation=cv2.INTER_LINEAR)
            data = jpeg(pixels, 90)
            decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            records.append(
                signed_record(
                    data,
                    decoded,
                    cid=store.put(data),
                    owner="archive",
                    key=key,
                    created_at=stamp,
                )
            )
        node.ledger.append_many(records)
        embeddings = distractor_embeddings(source, n, rng)
        visual.put_many((r.record_id, EMPTY, e) for r, e in zip(records, embeddings, strict=True))
        done += n
    visual.close()


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- queries --------------------------------------------------------------------------------------
def variants(pixels: np.ndarray) -> dict[str, list[bytes]]:
    h, w = pixels.shape[:2]
    kh, kw = int(0.1 * h), int(0.1 * w)
    crops = [pixels[kh:], pixels[:, kw:], pixels[:-kh], pixels[:, :-kw]]
    crops.append(pixels[kh // 2 : h - kh // 2, kw // 2 : w - kw // 2])
    rotations = []
    for angle in (2, -2):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        turned = cv2.warpAffine(pixels, matrix, (w, h), flags=cv2.INTER_LINEAR)
        b = int(0.04 * max(h, w))
        rotations.append(turned[b:-b, b:-b])
    return {
        "jpeg75": [jpeg(pixels, 75)],
        "crop10": [jpeg(np.ascontiguousarray(c), 85) for c in crops],
        "rotate2": [jpeg(np.ascontiguousarray(r), 85) for r in rotations],
    }


def cli(home: Path, *args: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        [*BI, "--home", str(home), *args], capture_output=True, env={**os.environ}, check=False
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"blockimage {' '.join(args)} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def measure(
    home: Path,
    size: int,
    registered: list[tuple[str, Path, np.ndarray]],
    unknown: list[np.ndarray],
    work: Path,
) -> dict[str, str]:
    out: dict[str, str] = {}
    out["node open"] = ms(median_time(lambda: Node(home).close(), 5))
    with Node(home) as node:
        t0 = time.perf_counter()
        for matcher in node.matchers:  # the first use of each index: catch up with the ledger
            getattr(matcher, "index", lambda: None)()
        out["index catch-up (first use)"] = ms(time.perf_counter() - t0)
        pdq = PdqIndex(home / "index")
        codes = np.asarray(pdq._files.view()["code"])
        rng = np.random.default_rng(size)
        queries = [codes[i].copy() for i in rng.integers(0, len(codes), 50)]
        for q in queries:
            q[:4] ^= rng.integers(0, 256, 4, dtype=np.uint8)
        out["PDQ query (FAISS, exact)"] = ms(
            statistics.median(
                median_time(lambda q=q: pdq.nearest(q.tobytes().hex(), max_distance=90, k=3), 1)
                for q in queries
            )
        )
        words = codes.view(np.uint64)
        out["  baseline: numpy popcount scan"] = ms(
            median_time(lambda: np.bitwise_count(words ^ queries[0].view(np.uint64)).sum(axis=1), 5)
        )
        pdq.close()
        visual = node.matchers[-1].index()
        suspect = node.verifier.suspect(None, registered[0][2])
        emb = suspect.embedding
        out["shortlist query (sketch + re-rank)"] = ms(median_time(lambda: visual.nearest(emb), 20))

        times: dict[str, list[float]] = {}
        found: dict[str, list[bool]] = {}
        for record_id, output, pixels in registered:
            cases = {"exact": [output.read_bytes()], **variants(pixels)}
            for kind, items in cases.items():
                for data in items:
                    t0 = time.perf_counter()
                    verdict = node.verify(data)
                    times.setdefault(kind, []).append(time.perf_counter() - t0)
                    found.setdefault(kind, []).append(
                        verdict.record_id == record_id
                        and verdict.verdict in ("authentic", "benign")
                    )
        for pixels in unknown:
            t0 = time.perf_counter()
            verdict = node.verify(pixels)
            times.setdefault("unknown", []).append(time.perf_counter() - t0)
            found.setdefault("unknown", []).append(verdict.verdict == "unknown")
        for kind, values in times.items():
            rate = f"  right {sum(found[kind])}/{len(found[kind])}"
            out[f"verify in-process: {kind}"] = ms(statistics.median(values)) + rate
        out["disk per record (ledger+index+blocks)"] = (
            f"{sum(disk_bytes(home / p) for p in ('ledger.db', 'index', 'blocks')) / size:8.0f} B"
        )
        out["  of which index/"] = f"{disk_bytes(home / 'index') / size:8.0f} B"

    record_id, output, pixels = registered[0]
    crop = work / "crop.jpg"
    crop.write_bytes(variants(pixels)["crop10"][0])
    out["CLI floor: blockimage --help"] = ms(median_time(lambda: cli(home, "--help"), 3))
    out["CLI verify (exact)"] = ms(median_time(lambda: cli(home, "verify", str(output)), 3))
    out["CLI verify (crop 10 %)"] = ms(median_time(lambda: cli(home, "verify", str(crop)), 3))
    out["CLI history"] = ms(median_time(lambda: cli(home, "history", record_id), 3))
    with Node(home) as node:
        cid = node.ledger.get(record_id).cid
    out["CLI get"] = ms(median_time(lambda: cli(home, "get", cid, "-o", str(work / "g")), 3))
    out["CLI export"] = ms(
        median_time(lambda: cli(home, "export", record_id, "-o", str(work / "e.car")), 3)
    )
    fresh = work / f"new-{size}.jpg"
    fresh.write_bytes(jpeg(textured_picture(np.random.default_rng(size), (866, 1155)), 92))
    out["CLI register (1 MP)"] = ms(cli(home, "register", str(fresh), "--owner", "bench"))

    # The audit runs under a small launcher that reports the child's own peak RSS (a child
    # forked straight from this large process would count this process's pages before exec).
    launcher = (
        "import os, subprocess, sys\n"
        "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "_, status, usage = os.wait4(p.pid, 0)\n"
        "print(usage.ru_maxrss)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", launcher, *BI, "--home", str(home), "audit"],
        capture_output=True,
        text=True,
        check=True,
    )
    out["CLI audit (ledger + stored images)"] = f"{time.perf_counter() - t0:8.1f} s "
    out["  audit peak RSS"] = f"{int(done.stdout) / 1024:8.0f} MB"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="blockimage-scale-"))
    home = work / "home"
    if home.exists():
        shutil.rmtree(home)
    print(f"work folder {work}")

    pictures = [load(p, 1155) for p in photo_paths()]
    held_out = pictures[-max(2, len(pictures) // 5) :]
    to_register = pictures[: len(pictures) - len(held_out)]
    source = distractor_source(held_out)
    rng = np.random.default_rng(2026)
    rows: list[tuple[int, dict[str, str]]] = []
    registered: list[tuple[str, Path, np.ndarray]] = []
    have = 0
    with Node(home) as node:
        fill(home, node, sizes[0] - len(to_register), source, rng)
        for i, pixels in enumerate(to_register):
            path = work / f"photo{i:02d}.jpg"
            path.write_bytes(jpeg(pixels, 92))
            receipt = node.register(path, owner="newsroom")
            assert receipt.output is not None
            registered.append((receipt.record.record_id, Path(receipt.output), pixels))
        have = node.ledger.size()
    print(f"{len(registered)} photos registered among the synthetic records, "
          f"{len(held_out)} held out as unknown")  # fmt: skip
    for size in sizes:
        if size > have:
            t0 = time.perf_counter()
            with Node(home) as node:
                fill(home, node, size - have, source, rng)
                have = node.ledger.size()
            print(f"filled to {have:,} records in {time.perf_counter() - t0:.0f} s")
        result = measure(home, have, registered, held_out, work)
        with Node(home) as node:
            have = node.ledger.size()  # the CLI registered one more
        rows.append((size, result))
        print(f"\n{size:,} records")
        for name, value in result.items():
            print(f"  {name:<42} {value}")

    print("\n| measure | " + " | ".join(f"{s:,}" for s, _ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for name in rows[0][1]:
        cells = " | ".join(r[name].strip() for _, r in rows)
        print(f"| {name.strip()} | {cells} |")


if __name__ == "__main__":
    main()
