"""Ledger appends per second and latency: the embedded Merkle log and Hyperledger Fabric.

Starts a Fabric network with scripts/fabric-network.sh (native, loopback, one peer, one Raft
orderer, BatchTimeout from FABRIC_BATCH_TIMEOUT, default 100ms) unless --keep-network DIR names
a running one, then appends pre-signed records (the same kind a registration writes) with
1, 4, 16 and 32 concurrent submitters, each with its own Gateway connection. Beside them, in the
same run:
- the embedded Merkle log (one writer; and 4 writers on one SQLite file);
- the Fabric floor: one Evaluate round trip (a read through the gateway, no ordering).

Target: >= 20 appends/s on Fabric with concurrent submitters.

Usage: .venv/bin/python benchmarks/ledger.py [--n 200]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from blockimage.config import read_fabric_env
from blockimage.ledger.fabric import FabricLedger, FabricSettings
from blockimage.ledger.log import MerkleLog
from blockimage.records import Record, Tag, WatermarkMetrics, sign_record

ROOT = Path(__file__).resolve().parent.parent
KEY = Ed25519PrivateKey.generate()


def record() -> Record:
    r = Record(
        record_id=secrets.token_hex(8),
        owner="bench",
        owner_key=KEY.public_key().public_bytes_raw().hex(),
        created_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        sha256_file=secrets.token_hex(32),
        sha256_pixels=secrets.token_hex(32),
        original_sha256_file=secrets.token_hex(32),
        pdq=secrets.token_hex(32),
        pdq_quality=100,
        cid="bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
        width=1024,
        height=768,
        media_type="image/png",
        tags=(Tag("espresso", 0.94), Tag("cup", 0.81), Tag("beverage", 0.97)),
        watermark=WatermarkMetrics(46.2, 0.993, 1.0),
    )
    return sign_record(r, KEY)


def run(make_ledger, writers: int, n: int) -> tuple[float, list[float]]:
    """Append n records with `writers` threads; return (appends/s, latencies)."""
    per = [[record() for _ in range(n // writers)] for _ in range(writers)]
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    ready = threading.Barrier(writers + 1)

    def work(batch):
        lg = make_ledger()  # in its own thread (SQLite connections are per thread)
        ready.wait()
        try:
            for r in batch:
                t0 = time.perf_counter()
                lg.append(r)
                with lock:
                    latencies.append(time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001 - reported after the run
            errors.append(exc)
        finally:
            lg.close()

    threads = [threading.Thread(target=work, args=(batch,)) for batch in per]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return len(latencies) / elapsed, latencies


def line(name: str, rate: float, lat: list[float]) -> str:
    lat = sorted(lat)
    p95 = lat[int(0.95 * (len(lat) - 1))]
    return (
        f"{name:<34} {rate:8.1f} appends/s   latency median {statistics.median(lat) * 1000:7.1f} ms"
        f"   p95 {p95 * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="appends per configuration")
    parser.add_argument("--keep-network", type=Path, help="use the network running in DIR")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    node_key = Ed25519PrivateKey.generate()
    print(f"{args.n} appends per configuration; records as a registration writes them")
    rate, lat = run(lambda: MerkleLog(work / "one.db", node_key, origin="bench"), 1, args.n)
    print(line("merkle log, 1 writer", rate, lat))
    rate, lat = run(lambda: MerkleLog(work / "four.db", node_key, origin="bench"), 4, args.n)
    print(line("merkle log, 4 writers (one file)", rate, lat))

    net = args.keep_network or work / "fabric"
    if args.keep_network is None:
        print("starting a Fabric network (scripts/fabric-network.sh up) ...", file=sys.stderr)
        subprocess.run(
            [str(ROOT / "scripts/fabric-network.sh"), "up", str(net)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    settings = FabricSettings.from_mapping(read_fabric_env(net / "fabric.env"))
    try:
        warm = record()
        with_reader = FabricLedger(settings)
        with_reader.append(warm)  # warm up the peer, the chaincode and the connections
        with_reader.close()
        gateway = settings.connect()
        reads = []
        for _ in range(50):
            t0 = time.perf_counter()
            gateway.evaluate("GetRecord", warm.record_id)
            reads.append(time.perf_counter() - t0)
        gateway.close()
        print(
            f"{'fabric floor: one Evaluate (read)':<34} {'':>8}              "
            f"latency median {statistics.median(reads) * 1000:7.1f} ms"
        )
        rates = {}
        for writers in (1, 4, 16, 32):
            rates[writers], lat = run(lambda: FabricLedger(settings), writers, args.n)
            print(line(f"fabric, {writers} submitter(s)", rates[writers], lat))
        concurrent = max(r for w, r in rates.items() if w > 1)
        verdict = "met" if concurrent >= 20 else "NOT met"
        print(
            f"target >= 20 appends/s on Fabric with concurrent submitters: {verdict} "
            f"({concurrent:.1f}/s)"
        )
    finally:
        if args.keep_network is None:
            subprocess.run(
                [str(ROOT / "scripts/fabric-network.sh"), "down", str(net)],
                check=True,
                stderr=subprocess.DEVNULL,
            )


if __name__ == "__main__":
    main()
