"""BlockImage on real Kubo nodes: register through node A, fetch and verify through node B."""

from __future__ import annotations

import httpx
import numpy as np
from PIL import Image
from tests.conftest import jpeg_bytes

from blockimage import Node
from blockimage.evaluation import tampered_variant
from blockimage.storage.kubo import KuboStorage


def test_register_on_node_a_then_fetch_and_verify_through_node_b(
    home, photo_file, kubo_daemons, monkeypatch
):
    a, b = kubo_daemons(), kubo_daemons()
    ident = httpx.post(f"{a.api}/api/v0/id", timeout=10).json()
    address = next(x for x in ident["Addresses"] if "/127.0.0.1/" in x)
    connected = httpx.post(f"{b.api}/api/v0/swarm/connect", params={"arg": address}, timeout=10)
    assert connected.status_code == 200, connected.text

    monkeypatch.setenv("BLOCKIMAGE_STORAGE", "kubo")
    monkeypatch.setenv("BLOCKIMAGE_KUBO_API", a.api)
    with Node(home) as on_a:
        receipt = on_a.register(photo_file("motorcycle"), owner="newsroom")
    assert not KuboStorage(b.api).has(receipt.record.cid)  # B has never seen it

    monkeypatch.setenv("BLOCKIMAGE_KUBO_API", b.api)
    with Node(home) as on_b:
        written = open(receipt.output, "rb").read()
        assert on_b.get(receipt.record.cid) == written  # fetched from A over bitswap
        pixels = np.asarray(Image.open(receipt.output).convert("RGB"))
        edit = tampered_variant(pixels, "paint", np.random.default_rng(3))
        verdict = on_b.verify(jpeg_bytes(edit.pixels, 90))
        assert verdict.verdict == "tampered" and verdict.record_id == receipt.record.record_id
        assert on_b.audit().cids_checked == 1
