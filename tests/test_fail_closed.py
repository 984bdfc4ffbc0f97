"""Verdicts fail closed: without a verified stored original there is no benign or tampered
verdict, only a clear error naming the record that was found."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image
from tests.conftest import jpeg_bytes

from blockimage import Node
from blockimage.cli import cli
from blockimage.errors import OriginalUnavailableError
from blockimage.evaluation import signed_record, tampered_variant
from blockimage.fingerprint import pdq_hash
from blockimage.imaging import decode_image
from blockimage.ledger import LedgerIntegrityError
from blockimage.ledger.merkle import leaf_hash, node_hash
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
    # a quarter of the picture: beyond the watermark's synchronisation, found by keypoints
    crop = np.ascontiguousarray(img[int(h * 0.5) :, : w - int(w * 0.5)])
    block_of(home, receipt.record.cid).unlink()
    with Node(home) as node, pytest.raises(OriginalUnavailableError) as caught:
        node.verify(jpeg_bytes(crop, 85))
    assert caught.value.matched_by == "keypoints"


def _edit_leaf(home, record_id: str, leaf: bytes, record=None) -> None:
    """Rewrite a leaf of ledger.db by hand, as someone with write access to the file could:
    the leaf bytes and, given the record, its lookup columns and its level-0 node hash (so that
    only the inclusion proof under the signed checkpoint can tell)."""
    columns = ("record_id", "owner", "sha256_file", "sha256_pixels", "original_sha256_file", "cid")
    with sqlite3.connect(home / "ledger.db") as db:
        (index,) = db.execute(
            "SELECT leaf_index FROM leaves WHERE record_id=?", (record_id,)
        ).fetchone()
        db.execute("UPDATE leaves SET leaf=? WHERE leaf_index=?", (leaf, index))
        if record is not None:
            for column in columns:
                value = getattr(record, column)
                db.execute(f"UPDATE leaves SET {column}=? WHERE leaf_index=?", (value, index))
            db.execute("UPDATE nodes SET hash=? WHERE level=0 AND idx=?", (leaf_hash(leaf), index))


def _forged_in_place_of(record, photo):
    """A record of ``photo`` (never registered) signed by an attacker's own key, with the CID
    and time of ``record``."""
    data = photo.read_bytes()
    return signed_record(
        data, decode_image(data).pixels, cid=record.cid, owner="mallory",
        key=Ed25519PrivateKey.generate(), created_at=record.created_at,
    )  # fmt: skip


def _cli(home, *args):
    return CliRunner().invoke(cli, ["--home", str(home), *args])


@pytest.fixture
def two(home, photo_file):
    """Two registrations (a tree of two leaves: the first leaf's proof has a sibling)."""
    with Node(home) as node:
        first = node.register(photo_file("coffee"), owner="alice")
        second = node.register(photo_file("astronaut"), owner="bob")
    return first, second


def test_a_leaf_edited_in_the_database_gives_no_verdict_history_or_bundle(home, two, tmp_path):
    receipt, _ = two
    record_id = receipt.record.record_id
    _edit_leaf(home, record_id, receipt.log.leaf.replace(b'"owner":"alice"', b'"owner":"mallory"'))
    with sqlite3.connect(home / "ledger.db") as db:
        db.execute("UPDATE leaves SET owner='mallory' WHERE record_id=?", (record_id,))
    with Node(home) as node, pytest.raises(LedgerIntegrityError, match="owner signature"):
        node.verify(receipt.output)
    out = tmp_path / "evidence.car"
    for args in (
        ("verify", str(receipt.output)),
        ("history", record_id),
        ("export", record_id, "-o", str(out)),
    ):
        result = _cli(home, *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.count("\n") == 1
        assert f"ledger integrity failure: record {record_id}" in result.stderr
        assert "mallory" not in result.stdout
    assert not out.exists()


def test_a_leaf_replaced_by_an_attackers_own_signed_record_is_not_believed(home, two, photos):
    receipt, _ = two
    # A record for a never-registered photo, signed by the attacker's own key (its signature
    # verifies), put in place of alice's leaf with the lookup columns and leaf hash to match.
    forged = _forged_in_place_of(receipt.record, photos["rocket"])
    _edit_leaf(home, receipt.record.record_id, forged.leaf_bytes(), forged)
    with Node(home) as node:
        with pytest.raises(LedgerIntegrityError, match="inclusion proof"):
            node.verify(photos["rocket"])  # exact SHA-256 of the forged record: was AUTHENTIC
        with pytest.raises(LedgerIntegrityError, match="inclusion proof"):
            node.history(forged.record_id)
    result = _cli(home, "verify", str(photos["rocket"]))
    assert result.exit_code == 1 and "ledger integrity failure" in result.stderr
    assert "authentic" not in result.stdout.lower()


def test_a_derivative_listed_by_an_edited_parent_column_is_refused(home, two):
    first, other = two
    with Node(home) as node:
        assert [r.record_id for r in node.history(first.record.record_id)] == [
            first.record.record_id
        ]
    with sqlite3.connect(home / "ledger.db") as db:  # graft bob's record into alice's history
        db.execute(
            "UPDATE leaves SET parent=? WHERE record_id=?",
            (first.record.record_id, other.record.record_id),
        )
    with Node(home) as node, pytest.raises(LedgerIntegrityError, match="signed parent is None"):
        node.history(first.record.record_id)


@pytest.mark.parametrize("head", ["kept", "deleted too"])
def test_a_rolled_back_or_rewritten_log_is_refused_on_open(home, two, head):
    _, newest = two
    with sqlite3.connect(home / "ledger.db") as db:  # the newest leaf, its node and checkpoint
        db.execute("DELETE FROM leaves WHERE leaf_index=1")
        db.execute("DELETE FROM nodes WHERE NOT (level=0 AND idx=0)")
        db.execute("DELETE FROM checkpoints WHERE tree_size=2")
    if head == "deleted too":  # then the log passes its own checks: only the head knew
        (home / "ledger.head").unlink()
        with Node(home) as node:
            assert node.ledger.size() == 1
        return
    result = _cli(home, "history", newest.record.record_id)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "this node signed a checkpoint for 2" in result.stderr and "rollback" in result.stderr
    with pytest.raises(LedgerIntegrityError, match="rollback"):
        Node(home)


def test_a_rewritten_first_leaf_is_refused_on_open_even_without_the_head(home, two, photos):
    first, _ = two
    forged = _forged_in_place_of(first.record, photos["rocket"])
    _edit_leaf(home, first.record.record_id, forged.leaf_bytes(), forged)
    with sqlite3.connect(home / "ledger.db") as db:  # and the root node above it
        (sibling,) = db.execute("SELECT hash FROM nodes WHERE level=0 AND idx=1").fetchone()
        root = node_hash(leaf_hash(forged.leaf_bytes()), sibling)
        db.execute("UPDATE nodes SET hash=? WHERE level=1 AND idx=0", (root,))
    (home / "ledger.head").unlink()
    with pytest.raises(LedgerIntegrityError, match="no longer hash to the root"):
        Node(home)


def test_a_derived_index_overwritten_with_an_unrelated_hash_decides_nothing(home, two, photos):
    """index/pdq.code edited so that alice's row holds the PDQ hash of a never-registered photo:
    the photo must not come out TAMPERED against alice's record (the distance is recomputed from
    the signed record, and the index is rebuilt from the ledger)."""
    first, _ = two
    stranger = decode_image(photos["rocket"].read_bytes()).pixels
    stranger_pdq, _ = pdq_hash(stranger)
    with Node(home) as node:
        assert node.verify(photos["rocket"]).verdict == "unknown"  # builds the index
    ids = np.fromfile(home / "index" / "pdq.record", dtype=np.uint64)
    row = int(np.flatnonzero(ids == int(first.record.record_id, 16))[0])
    codes = np.fromfile(home / "index" / "pdq.code", dtype=np.uint8).reshape(-1, 32)
    codes[row] = np.frombuffer(bytes.fromhex(stranger_pdq), np.uint8)
    codes.tofile(home / "index" / "pdq.code")
    with Node(home) as node:
        verdict = node.verify(photos["rocket"])
        assert verdict.verdict == "unknown" and verdict.record_id is None
    repaired = np.fromfile(home / "index" / "pdq.code", dtype=np.uint8).reshape(-1, 32)
    assert bytes(repaired[row]).hex() == first.record.pdq  # rebuilt from the ledger


def test_audit_checks_the_pdq_index_against_the_ledger_and_rebuilds_it(home, two, photos):
    first, _ = two
    with Node(home) as node:
        node.verify(photos["rocket"])  # builds the index
    result = _cli(home, "--json", "audit")
    assert result.exit_code == 0 and json.loads(result.stdout)["indexes_rebuilt"] == []
    ids = np.fromfile(home / "index" / "pdq.record", dtype=np.uint64)
    row = int(np.flatnonzero(ids == int(first.record.record_id, 16))[0])
    codes = np.fromfile(home / "index" / "pdq.code", dtype=np.uint8).reshape(-1, 32)
    codes[row, 0] ^= 0xFF
    codes.tofile(home / "index" / "pdq.code")
    result = _cli(home, "--json", "audit")
    assert result.exit_code == 0, result.output  # derived data: repaired, not a ledger fault
    (why,) = json.loads(result.stdout)["indexes_rebuilt"]
    record_id = first.record.record_id
    assert why == f"pdq: row {row} (record {record_id}) holds another PDQ hash than the record"
    repaired = np.fromfile(home / "index" / "pdq.code", dtype=np.uint8).reshape(-1, 32)
    assert bytes(repaired[row]).hex() == first.record.pdq
    text = _cli(home, "audit")
    assert text.exit_code == 0 and "rebuilt" not in text.stdout  # nothing left to repair
