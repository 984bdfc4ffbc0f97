"""Several nodes, one ledger: how fast a second node's derived indexes catch up.

Node A registers N distinct 1 MP pictures on a Hyperledger Fabric channel, storing them in a
Kubo node (both started here on loopback by the project's scripts). Node B, with a home of its
own, has never seen them; on first use its PDQ index follows the channel (records only) and its
keypoint index computes each picture's keypoint signature and embedding from the image fetched
from Kubo. Baseline in the same run: the compute alone (decode + keypoints + embedding) of the
same files read from local disk.

Usage: .venv/bin/python benchmarks/catchup.py [--images N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from blockimage import Node
from blockimage.analysis.embedding import image_embedding
from blockimage.evaluation import textured_picture
from blockimage.imaging import decode_image, encode_image
from blockimage.keypoints import signature

ROOT = Path(__file__).resolve().parent.parent


def up(script: str, directory: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "scripts" / script), "up", str(directory)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())


def down(script: str, directory: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / script), "down", str(directory)], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="blockimage-catchup-"))
    kubo_env = up("kubo.sh", work / "kubo")
    fabric_env = up("fabric-network.sh", work / "fabric")
    try:
        os.environ["BLOCKIMAGE_STORAGE"] = "kubo"
        os.environ["BLOCKIMAGE_KUBO_API"] = kubo_env["BLOCKIMAGE_KUBO_API"]
        os.environ["BLOCKIMAGE_LEDGER"] = "fabric"
        for name, value in fabric_env.items():
            if name.startswith("BLOCKIMAGE_FABRIC_"):
                os.environ[name] = value
        rng = np.random.default_rng(7)
        files = []
        for i in range(args.images):
            path = work / f"picture{i:03d}.png"
            path.write_bytes(encode_image(textured_picture(rng, (866, 1155)), "PNG"))
            files.append(path)

        t0 = time.perf_counter()
        with Node(work / "a") as node_a:
            for path in files:
                node_a.register(path, owner="agency", out=work / "out")
        registered = time.perf_counter() - t0

        t0 = time.perf_counter()
        for path in files:
            pixels = decode_image(path.read_bytes()).pixels
            signature(pixels), image_embedding(pixels)
        floor = time.perf_counter() - t0

        with Node(work / "b") as node_b:
            size = node_b.ledger.size()
            t0 = time.perf_counter()
            node_b.matchers[2].index()  # PDQ: the records alone
            pdq = time.perf_counter() - t0
            t0 = time.perf_counter()
            node_b.matchers[3].index()  # keypoints: every image fetched from Kubo
            visual = time.perf_counter() - t0
            t0 = time.perf_counter()
            node_b.matchers[2].index()
            node_b.matchers[3].index()
            again = time.perf_counter() - t0
        n = args.images
        print(f"{n} pictures of 1 MP on a Fabric channel ({size} records) and one Kubo node")
        print(f"node A register (Fabric + Kubo)       {n / registered:8.1f} records/s")
        print(f"node B PDQ index catch-up             {size / pdq:8.1f} records/s")
        print(f"node B keypoint index catch-up        {size / visual:8.1f} records/s")
        print(f"  baseline: compute alone, local disk {n / floor:8.1f} records/s")
        print(f"node B second use (nothing to do)     {again * 1000:8.1f} ms")
    finally:
        down("fabric-network.sh", work / "fabric")
        down("kubo.sh", work / "kubo")


if __name__ == "__main__":
    sys.exit(main())
