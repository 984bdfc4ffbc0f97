"""Verdicts fail closed: without a verified stored original there is no benign or tampered
verdict, only a clear error naming the record that was found."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tests.conftest import jpeg_bytes

from blockimage import Node
from blockimage.cli import cli
from blockimage.errors import OriginalUnavailableError
from blockimage.evaluation import tampered_variant
from blockimage.storage.local import LocalBlockstore


@pytest.fixture
def registered(home, photo_file, photos, tmp_path):
    """A registered photo and a tampered copy of it, judged TAMPERED while the original is
    intact."""
    with Node(home) as node:
        receipt = node.register(photo_file("motorcycle"), owner="alice")
        pixels = np.asarray(Image.open(receipt.output).convert("RGB"))
        donor = np.asarray(Image.open(photos["coffee"]).convert("RGB"))
        edit = tampered_variant(pixels, "splice", np.random.default_rng(4), donor=donor)
        copy = tmp_path / "copy.jpg"
        copy.write_bytes(jpeg_bytes(edit.pixels, 85))
        assert node.verify(copy).verdict == "tampered"
    return receipt, copy


def block_of(home, cid):
    return next(p for p in (home / "blocks").rglob("*") if p.name == cid)


@pytest.mark.parametrize("damage", ["deleted", "one byte flipped"])
def test_a_damaged_original_gives_no_verdict(home, registered, damage):
    receipt, copy = registered
    block = block_of(home, receipt.record.cid)
    if damage == "deleted":
        block.unlink()
    else:
        data = bytearray(block.read_bytes())
        data[len(data) // 2] ^= 0x01
        block.write_bytes(bytes(data))
    with Node(home) as node, pytest.raises(OriginalUnavailableError) as caught:
        node.verify(copy)
    assert caught.value.record_id == receipt.record.record_id
    assert caught.value.matched_by == "watermark"
    result = CliRunner().invoke(cli, ["--home", str(home), "verify", str(copy)])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and receipt.record.record_id in result.stderr
    assert "no benign or tampered verdict" in result.stderr


class SwappingStorage(LocalBlockstore):
    """A store that answers every request with other, well-formed image bytes."""

    def __init__(self, root, other: bytes) -> None:
        super().__init__(root)
        self.other = other

    def get(self, cid: str) -> bytes:
        return self.other


def test_an_original_that_does_not_match_its_record_is_not_used(home, registered, photos):
    receipt, copy = registered
    with Node(home, storage=SwappingStorage(home / "blocks", photos["coffee"].read_bytes())) as n:
        with pytest.raises(OriginalUnavailableError, match="does not have the SHA-256"):
            n.verify(copy)
        # An exact match needs no stored original: the hashes are the evidence.
        assert n.verify(receipt.output).verdict == "authentic"


def test_a_candidate_that_cannot_be_checked_is_not_called_unknown(home, photo_file):
    with Node(home) as node:
        receipt = node.register(photo_file("coffee"), owner="alice")
    img = np.asarray(Image.open(receipt.output).convert("RGB"))
    h, w = img.shape[:2]
    crop = np.ascontiguousarray(img[int(h * 0.12) :, : w - int(w * 0.1)])  # found by keypoints
    block_of(home, receipt.record.cid).unlink()
    with Node(home) as node, pytest.raises(OriginalUnavailableError) as caught:
        node.verify(jpeg_bytes(crop, 85))
    assert caught.value.matched_by == "keypoints"
