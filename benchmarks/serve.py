"""The service under load: `blockimage serve` over a home of 10^5 records, real HTTP clients.

The home is the scale benchmark's (synthetic records signed by our own code, with distractor
visual signatures; ``scale.fill``), with real photos (~1 MP) registered among them. In one run:
- server start: `blockimage serve` until /healthz answers, and until its image workers are warm;
- verify of a re-encoded copy (JPEG 75 of each registered photo), 1 client, then 8 concurrent
  clients: p50, p95, max latency, throughput, errors; the baseline is the same verify in-process
  (``Node.verify`` of the same bytes, no HTTP, one core);
- register throughput of new 1 MP pictures, 1 client and 4 concurrent clients;
- the C2PA Soft Binding Resolution API: POST /matches/byContent with the same copies (baseline:
  ``Node.resolver.by_content`` in-process), GET /matches/byBinding with the copies' PDQ hashes
  and with the record ids their watermarks carry, GET /manifests/{id}, 1 client.

Usage: .venv/bin/python benchmarks/serve.py [--records 100000] [--work DIR] [--requests 48]
(a home left in --work by an earlier run of the same size is reused).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from photos import load, photo_paths  # noqa: E402
from scale import distractor_source, fill, jpeg  # noqa: E402

from blockimage import Node  # noqa: E402
from blockimage.credentials import (  # noqa: E402
    FINGERPRINT_ALG,
    SOFT_BINDING_ALG,
    record_of_manifest,
)
from blockimage.evaluation import textured_picture  # noqa: E402
from blockimage.fingerprint import pdq_hash  # noqa: E402


def build_home(work: Path, records: int) -> tuple[Path, list[bytes]]:
    """The home (reused when it holds ``records`` already) and the re-encoded copies."""
    home = work / "home"
    pictures = [load(p, 1155) for p in photo_paths()]
    held_out = pictures[-max(2, len(pictures) // 5) :]
    to_register = pictures[: len(pictures) - len(held_out)]
    copies = work / "copies"
    if home.exists():
        with Node(home) as node:
            if node.ledger.size() >= records and copies.exists():
                print(f"reusing {home} ({node.ledger.size():,} records)")
                return home, [p.read_bytes() for p in sorted(copies.glob("*.jpg"))]
        shutil.rmtree(home)
    shutil.rmtree(copies, ignore_errors=True)
    copies.mkdir(parents=True)
    t0 = time.perf_counter()
    source = distractor_source(held_out)
    with Node(home) as node:
        fill(home, node, records - len(to_register), source, np.random.default_rng(2026))
        for i, pixels in enumerate(to_register):
            path = work / f"photo{i:02d}.jpg"
            path.write_bytes(jpeg(pixels, 92))
            receipt = node.register(path, owner="newsroom", out=work)
            marked = np.asarray(load(Path(receipt.output), 1155))  # the registered file
            (copies / f"copy{i:02d}.jpg").write_bytes(jpeg(marked, 75))
        print(f"home of {node.ledger.size():,} records built in {time.perf_counter() - t0:.0f} s")
    return home, [p.read_bytes() for p in sorted(copies.glob("*.jpg"))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, log: Path) -> tuple[subprocess.Popen, str, float, float]:
    """(process, url, seconds to /healthz 200, seconds until every worker is warm)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "blockimage", "--home", str(home), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    ready = None
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if ready is None and httpx.get(url + "/healthz", timeout=1).status_code == 200:
                ready = time.perf_counter() - t0
        except httpx.TransportError:
            pass
        workers = len(os.sched_getaffinity(0))  # serve's default
        if ready is not None and log.read_text().count(" ready") >= workers:
            return process, url, ready, time.perf_counter() - t0
        time.sleep(0.02)


def run_clients(
    url: str, route: str, bodies: list[dict], clients: int, headers: dict | None = None
) -> dict[str, float]:
    """Send every body once, ``clients`` at a time; latency figures and throughput."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(body: dict) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            t0 = time.perf_counter()
            got = client.post(route, headers=headers, **body)
            took = time.perf_counter() - t0
        with lock:
            latencies.append(took)
            if got.status_code != 200:
                errors.append(f"{got.status_code} {got.text[:80]}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, bodies))
    wall = time.perf_counter() - t0
    if errors:
        print(f"  {len(errors)} errors, e.g. {errors[0]}")
    ordered = sorted(latencies)
    return {
        "p50": statistics.median(ordered) * 1000,
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000,
        "max": ordered[-1] * 1000,
        "per_s": len(bodies) / wall,
        "errors": len(errors),
    }


def soft_binding_rows(
    url: str, copies: list[bytes], pdqs: list[bytes], baseline: float
) -> list[tuple[str, str]]:
    """The C2PA Soft Binding Resolution API, one client: by content, by binding, manifests."""
    kind = {"Content-Type": "image/jpeg"}
    by_content = run_clients(url, "/matches/byContent", [{"content": c} for c in copies], 1, kind)
    with httpx.Client(base_url=url, timeout=60) as client:
        ids = [
            client.post("/matches/byContent", content=c, headers=kind).json()["matches"]
            for c in copies
        ]
        found = [m[0]["manifestId"] for m in ids if m]

        def timed(requests: list[tuple[str, dict]]) -> tuple[float, int]:
            took, missed = [], 0
            for path, params in requests:
                t0 = time.perf_counter()
                answer = client.get(path, params=params)
                took.append(time.perf_counter() - t0)
                missed += answer.status_code != 200 or (
                    path.startswith("/matches") and not answer.json()["matches"]
                )
            return statistics.median(took) * 1000, missed

        def b64(raw: bytes) -> str:
            return base64.b64encode(raw).decode("ascii")

        pdq = timed(
            [("/matches/byBinding", {"alg": FINGERPRINT_ALG, "value": b64(v)}) for v in pdqs]
        )
        marks = [bytes.fromhex(record_of_manifest(m) or "") for m in found]
        mark = timed([("/matches/byBinding", {"alg": SOFT_BINDING_ALG, "value": b64(v)})
                      for v in marks])  # fmt: skip
        stores = timed([(f"/manifests/{m}", {}) for m in found])
    return [
        ("byContent in-process (baseline), median", f"{baseline:.0f} ms"),
        ("POST /matches/byContent, 1 client: p50 / p95",
         f"{by_content['p50']:.0f} / {by_content['p95']:.0f} ms"),
        ("byContent: copies whose manifest was found", f"{len(found)} of {len(copies)}"),
        ("GET /matches/byBinding (PDQ), median / misses", f"{pdq[0]:.1f} ms / {pdq[1]}"),
        ("GET /matches/byBinding (watermark), median / misses", f"{mark[0]:.1f} ms / {mark[1]}"),
        ("GET /manifests/{id}, median / misses", f"{stores[0]:.1f} ms / {stores[1]}"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=48, help="verify requests per load")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="blockimage-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}")
    home, copies = build_home(work, args.records)
    size = len(copies[0])
    print(f"{len(copies)} re-encoded copies (JPEG 75, ~1 MP, e.g. {size:,} bytes)")

    # Baseline: the same verify in-process, one core, no HTTP.
    with Node(home) as node:
        for data in copies[:2]:
            node.verify(data)  # warm: models, indexes
        times, kinds = [], []
        for data in copies:
            t0 = time.perf_counter()
            kinds.append(node.verify(data).verdict)
            times.append(time.perf_counter() - t0)
        records = node.ledger.size()
        baseline = statistics.median(times) * 1000
        print(f"in-process verify: median {baseline:.0f} ms, verdicts {sorted(set(kinds))}")
        times, pdqs = [], []
        for data in copies:
            t0 = time.perf_counter()
            node.resolver.by_content(node.load(data))
            times.append(time.perf_counter() - t0)
            pdqs.append(bytes.fromhex(pdq_hash(node.load(data).image.pixels)[0]))
        match_baseline = statistics.median(times) * 1000

    log = work / "serve.log"
    process, url, ready, warm = start_server(home, log)
    bodies = [
        {"files": {"file": (f"copy{i}.jpg", copies[i % len(copies)], "image/jpeg")}}
        for i in range(args.requests)
    ]
    rows: list[tuple[str, str]] = [
        ("records in the home", f"{records:,}"),
        ("server start: /healthz answers", f"{ready * 1000:.0f} ms"),
        ("server start: image workers warm", f"{warm * 1000:.0f} ms"),
        ("verify in-process (baseline), median", f"{baseline:.0f} ms"),
    ]
    try:
        for _ in range(2):
            run_clients(url, "/api/verify", bodies[:4], 2)  # warm both workers
        one = run_clients(url, "/api/verify", bodies, 1)
        eight = run_clients(url, "/api/verify", bodies, 8)
        for name, r in (("1 client", one), ("8 clients", eight)):
            rows.append((f"verify, {name}: p50 / p95 / max",
                         f"{r['p50']:.0f} / {r['p95']:.0f} / {r['max']:.0f} ms"))  # fmt: skip
            rows.append((f"verify, {name}: throughput", f"{r['per_s']:.2f} /s"))
            rows.append((f"verify, {name}: errors", str(r["errors"])))
        rows.append(("verify throughput, 8 clients / 1", f"{eight['per_s'] / one['per_s']:.2f}x"))

        token = Node(home).keys.api_token()
        rng = np.random.default_rng()  # new pictures each run: a reused home has the last ones
        new = [
            {
                "files": {
                    "file": ("new.jpg", jpeg(textured_picture(rng, (880, 1160)), 92), "image/jpeg")
                },
                "data": {"owner": "desk"},
            }  # fmt: skip
            for _ in range(24)
        ]
        auth = {"Authorization": f"Bearer {token}"}
        reg_one = run_clients(url, "/api/register", new[:12], 1, auth)
        reg_four = run_clients(url, "/api/register", new[12:], 4, auth)
        for name, r in (("1 client", reg_one), ("4 clients", reg_four)):
            rows.append((f"register 1 MP, {name}: p50 / throughput",
                         f"{r['p50']:.0f} ms / {r['per_s']:.2f} /s"))  # fmt: skip
            rows.append((f"register 1 MP, {name}: errors", str(r["errors"])))
        rows.extend(soft_binding_rows(url, copies, pdqs, match_baseline))
    finally:
        process.terminate()
        process.wait(timeout=120)
    print("\n| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
