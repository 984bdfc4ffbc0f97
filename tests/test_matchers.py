"""Matchers as plug-ins: discovered in cascade order, indexes opened on first use, derived from
the ledger, and a node whose backends are given to it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image
from tests.conftest import jpeg_bytes
from tests.test_ledger_contract import fresh

from blockimage import Node
from blockimage.ledger.log import MerkleLog
from blockimage.matchers import MatcherParts, Strength, Suspect, load_matchers
from blockimage.matchers.keypoints import VisualIndex
from blockimage.storage.local import LocalBlockstore


@pytest.fixture
def log(tmp_path):
    ledger = MerkleLog(tmp_path / "ledger.db", Ed25519PrivateKey.generate(), origin="test/log")
    yield ledger
    ledger.close()


def test_matchers_are_found_in_cascade_order(tmp_path, log):
    parts = MatcherParts(log, LocalBlockstore(tmp_path / "blocks"), tmp_path / "index", 10**8)
    matchers = load_matchers(parts)
    assert [m.name for m in matchers] == ["exact", "watermark", "pdq", "keypoints"]
    assert all(m.parts is parts for m in matchers)


def test_indexes_open_on_first_use_and_catch_up_with_the_ledger(home, photo_file):
    with Node(home) as node:
        receipt = node.register(photo_file("coffee"), owner="alice")
    shutil.rmtree(home / "index")  # as if the derived indexes were lost
    registered = Image.open(receipt.output).convert("RGB")
    with Node(home) as node:
        assert node.verify(receipt.output).matched_by == "sha256_file"
        assert node.verify(jpeg_bytes(np.asarray(registered), 70)).matched_by == "watermark"
        assert not (home / "index").exists()  # neither lookup needed an index
        # turned by 5 degrees, beyond the watermark's synchronisation search (3): PDQ finds it,
        # its index rebuilt from the ledger
        rotated = np.asarray(registered.rotate(5, Image.Resampling.BICUBIC))
        verdict = node.verify(rotated)
        assert (verdict.matched_by, verdict.record_id) == ("pdq", receipt.record.record_id)
        assert (home / "index" / "pdq.code").exists()


def test_records_without_a_stored_image_are_looked_at_once(tmp_path, log):
    for _ in range(3):
        log.append(fresh())
    asked = []

    def compute(record):
        asked.append(record.record_id)
        return None  # the image lives in another node's store

    first = VisualIndex(tmp_path / "index")
    assert first.sync(log, compute) == 0 and len(asked) == 3
    first.close()
    again = VisualIndex(tmp_path / "index")
    assert again.sync(log, compute) == 0 and len(asked) == 3  # not rescanned
    log.append(fresh())
    assert again.sync(log, compute) == 0 and len(asked) == 4  # only the new leaf
    again.close()


def test_a_node_uses_the_backends_it_is_given(home, tmp_path, photo_file):
    elsewhere = tmp_path / "shared-blocks"
    with Node(home, storage=LocalBlockstore(elsewhere)) as node:
        receipt = node.register(photo_file("rocket"), owner="alice")
        assert node.get(receipt.record.cid) == open(receipt.output, "rb").read()
    assert any(p.name == receipt.record.cid for p in elsewhere.rglob("*"))
    assert not (home / "blocks").exists()


def test_register_asks_only_for_confident_matches(node, photo_file):
    receipt = node.register(photo_file("astronaut"), owner="alice")
    image = np.asarray(Image.open(receipt.output).convert("RGB"))
    h, w = image.shape[:2]
    pixels = np.ascontiguousarray(image[h // 8 :, w // 8 :])
    # as registration's duplicate check sees a crop: the mark read as it is, so no match
    crop = Suspect(None, pixels, watermark_key=node.keys.watermark_key(), sync=False)
    found = [c for m in node.matchers for c in m.candidates(crop, at_least=Strength.CANDIDATE)]
    assert found and all(c.strength == Strength.CANDIDATE for c in found)
    assert [c for m in node.matchers for c in m.candidates(crop, at_least=Strength.MATCH)] == []
