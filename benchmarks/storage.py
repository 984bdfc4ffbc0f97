"""Add and retrieval latency of a 1 MB image: embedded blockstore, Kubo, and a second Kubo node.

Starts two Kubo daemons with scripts/kubo.sh (loopback, closed network), connects them, and
times, per operation over fresh random 1 MB files:
- the embedded blockstore: put, get;
- Kubo node A through our RPC client: add, cat;
- Kubo node B, connected to A: cat of content only A has (cold: fetched over bitswap), then the
  same again (warm: now in B's blockstore);
- beside them, Kubo's own command line `ipfs cat` on node A (includes process start-up).

Usage: .venv/bin/python benchmarks/storage.py [--n 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from blockimage.storage.kubo import KuboStorage
from blockimage.storage.local import LocalBlockstore

ROOT = Path(__file__).resolve().parent.parent
SIZE = 1_000_000


def up(repo: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "scripts/kubo.sh"), "up", str(repo)], check=True, capture_output=True, text=True
    ).stdout
    return dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())


def ms(samples: list[float]) -> str:
    return (
        f"median {statistics.median(samples) * 1000:7.1f} ms   "
        f"p95 {sorted(samples)[int(0.95 * (len(samples) - 1))] * 1000:7.1f} ms"
    )


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    files = [rng.integers(0, 256, SIZE, dtype=np.uint8).tobytes() for _ in range(args.n)]
    results: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds)

    with tempfile.TemporaryDirectory() as tmp:
        local = LocalBlockstore(Path(tmp) / "blocks")
        repos = [Path(tmp) / "kubo-a", Path(tmp) / "kubo-b"]
        env_a, env_b = up(repos[0]), up(repos[1])
        try:
            a, b = (
                KuboStorage(env_a["BLOCKIMAGE_KUBO_API"]),
                KuboStorage(env_b["BLOCKIMAGE_KUBO_API"]),
            )
            ident = httpx.post(f"{a.api}/api/v0/id", timeout=10).json()
            addr = next(x for x in ident["Addresses"] if "/127.0.0.1/" in x)
            httpx.post(f"{b.api}/api/v0/swarm/connect", params={"arg": addr}, timeout=10)
            ipfs = [str(ROOT / ".cache/kubo/bin/ipfs")]
            cli_env = {**os.environ, "IPFS_PATH": env_a["IPFS_PATH"], "IPFS_TELEMETRY": "off"}
            for data in files:
                t, cid = timed(local.put, data)
                record("embedded blockstore: put", t)
                record("embedded blockstore: get", timed(local.get, cid)[0])
                t, cid = timed(a.put, data)
                record("Kubo A (RPC): add", t)
                record("Kubo A (RPC): cat", timed(a.get, cid)[0])
                t, out = timed(
                    lambda c=cid: subprocess.run(
                        [*ipfs, "cat", c], env=cli_env, capture_output=True, check=True
                    )
                )
                record("Kubo A: `ipfs cat` command", t)
                t, got = timed(b.get, cid)
                assert got == data
                record("Kubo B (RPC): cat, cold (bitswap from A)", t)
                record("Kubo B (RPC): cat, warm", timed(b.get, cid)[0])
        finally:
            for repo in repos:
                subprocess.run(
                    [str(ROOT / "scripts/kubo.sh"), "down", str(repo)], capture_output=True
                )
    print(f"{args.n} random files of {SIZE:,} bytes each\n")
    for name, samples in results.items():
        print(f"{name:<44} {ms(samples)}")


if __name__ == "__main__":
    main()
