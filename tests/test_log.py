"""The embedded ledger: append-only Merkle log in SQLite (Ledger Protocol contract + audit)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pymerkle
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.test_records import make_record

from blockimage.ledger import AuditFailure, DuplicateRecordError, Ledger, RecordNotFoundError
from blockimage.ledger import log as log_module
from blockimage.ledger.checkpoint import open_checkpoint
from blockimage.ledger.log import MerkleLog
from blockimage.ledger.merkle import leaf_hash, node_hash, verify_consistency, verify_inclusion
from blockimage.records import InvalidRecordSignatureError, sign_record

NODE_KEY = Ed25519PrivateKey.generate()
OWNER = Ed25519PrivateKey.generate()


def rec(i: int, **changes):
    r = make_record(
        OWNER,
        record_id=f"{i:016x}",
        sha256_file=f"{i:064x}",
        sha256_pixels=f"{i + 10**9:064x}",
        original_sha256_file=f"{i + 2 * 10**9:064x}",
        **changes,
    )
    return sign_record(r, OWNER)


@pytest.fixture
def ledger(tmp_path):
    lg = MerkleLog(tmp_path / "ledger.db", NODE_KEY, origin="test/log")
    yield lg
    lg.close()


def test_is_a_ledger(ledger):
    assert isinstance(ledger, Ledger)


def test_append_returns_a_proof_that_verifies_against_the_signed_checkpoint(ledger):
    public = NODE_KEY.public_key().public_bytes_raw()
    for i in range(13):
        proof = ledger.append(rec(i))
        assert (proof.leaf_index, proof.tree_size) == (i, i + 1)
        cp = open_checkpoint(proof.checkpoint, public, name="test/log")
        assert cp.root_hash.hex() == proof.root_hash and cp.tree_size == i + 1
        path = [bytes.fromhex(h) for h in proof.inclusion_path]
        verify_inclusion(leaf_hash(proof.leaf), i, i + 1, path, cp.root_hash)


def test_roots_and_proofs_agree_with_pymerkle(ledger):
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for i in range(21):
        tree.append_entry(ledger.append(rec(i)).leaf)
    for i in (0, 7, 20):
        proof = ledger.proof(f"{i:016x}")
        assert tree.get_root(21).hex() == proof.root_hash
        theirs = tree.prove_inclusion(i + 1, 21).serialize()["path"][1:]
        assert theirs == list(proof.inclusion_path)


def test_old_checkpoints_are_consistent_with_the_new_tree(ledger):
    heads = [ledger.append(rec(i)) for i in range(10)]
    for old in (heads[0], heads[3], heads[7]):
        path = [bytes.fromhex(h) for h in ledger.consistency_proof(old.tree_size)]
        verify_consistency(
            old.tree_size,
            10,
            bytes.fromhex(old.root_hash),
            bytes.fromhex(heads[-1].root_hash),
            path,
        )


def test_lookups_by_id_hash_owner_and_history(ledger):
    a = rec(1)
    b = rec(2, parent=a.record_id)
    c = rec(3, parent=b.record_id)
    d = rec(4, owner="bob")
    for r in (a, b, c, d):
        ledger.append(sign_record(r, OWNER))
    assert ledger.get(a.record_id) == a
    assert ledger.find_by_sha256(a.sha256_file) == [a]
    assert ledger.find_by_sha256(b.sha256_pixels) == [b]
    assert ledger.find_by_sha256(c.original_sha256_file) == [c]
    assert ledger.find_by_sha256("f" * 64) == []
    assert [r.record_id for r in ledger.by_owner("bob")] == [d.record_id]
    assert [r.record_id for r in ledger.history(a.record_id)] == [
        a.record_id,
        b.record_id,
        c.record_id,
    ]
    assert [r.record_id for r in ledger.history(b.record_id)] == [b.record_id, c.record_id]
    with pytest.raises(RecordNotFoundError):
        ledger.get("ffffffffffffffff")


def test_duplicate_ids_and_bad_signatures_are_refused(ledger):
    ledger.append(rec(1))
    with pytest.raises(DuplicateRecordError):
        ledger.append(rec(1))
    with pytest.raises(InvalidRecordSignatureError):
        ledger.append(replace(rec(2), owner="mallory"))
    assert ledger.size() == 1


def test_a_failure_inside_append_leaves_no_partial_record(ledger, monkeypatch):
    ledger.append(rec(1))

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(log_module, "sign_checkpoint", boom)
    with pytest.raises(RuntimeError):
        ledger.append(rec(2))
    monkeypatch.undo()
    assert ledger.size() == 1
    ledger.audit()
    assert ledger.append(rec(2)).leaf_index == 1


def test_log_survives_reopening(tmp_path):
    first = MerkleLog(tmp_path / "l.db", NODE_KEY, origin="o")
    p = first.append(rec(1))
    first.close()
    again = MerkleLog(tmp_path / "l.db", NODE_KEY, origin="o")
    assert again.proof(rec(1).record_id).root_hash == p.root_hash
    assert again.audit().records_checked == 1


def test_audit_passes_on_an_honest_log(ledger):
    for i in range(9):
        ledger.append(rec(i))
    report = ledger.audit()
    assert (report.tree_size, report.records_checked, report.checkpoints_checked) == (9, 9, 9)


def _tamper(ledger: MerkleLog, sql: str, *args) -> None:
    db = sqlite3.connect(ledger.path)
    db.execute(sql, args)
    db.commit()
    db.close()


def test_audit_names_the_leaf_whose_bytes_were_edited(ledger):
    for i in range(5):
        ledger.append(rec(i))
    leaf = ledger.proof(rec(3).record_id).leaf
    _tamper(
        ledger,
        "UPDATE leaves SET leaf=? WHERE leaf_index=3",
        leaf.replace(b'"owner":"alice"', b'"owner":"malice"'),
    )
    with pytest.raises(AuditFailure, match="leaf 3: record 0000000000000003: owner signature"):
        ledger.audit()


def test_audit_names_a_lookup_column_edited_by_hand(ledger):
    for i in range(3):
        ledger.append(rec(i))
    _tamper(ledger, "UPDATE leaves SET owner='mallory' WHERE leaf_index=1")
    with pytest.raises(AuditFailure, match="leaf 1 .* column owner is 'mallory'"):
        ledger.audit()


def test_audit_detects_a_re_signed_replacement_leaf(ledger):
    """A rewrite with a validly signed record still breaks the hashes and the checkpoints."""
    for i in range(4):
        ledger.append(rec(i))
    forged = sign_record(replace(rec(2), cid="bafkreiforged"), OWNER)
    _tamper(
        ledger,
        "UPDATE leaves SET leaf=?, cid=? WHERE leaf_index=2",
        forged.leaf_bytes(),
        forged.cid,
    )
    with pytest.raises(AuditFailure, match="leaf 2: stored hash .* != recomputed"):
        ledger.audit()


def test_audit_detects_a_rewritten_checkpoint_or_a_truncated_log(ledger):
    for i in range(4):
        ledger.append(rec(i))
    _tamper(ledger, "DELETE FROM leaves WHERE leaf_index=3")
    with pytest.raises(AuditFailure, match="checkpoint for tree size 4 exists"):
        ledger.audit()


def test_audit_resumes_from_a_leaf_and_reports_progress(ledger):
    ledger.append_many(rec(i) for i in range(10_000))
    ledger.append(rec(10_000))
    seen = []
    full = ledger.audit(progress=lambda done, total: seen.append((done, total)))
    assert seen == [(10_000, 10_001)]
    assert (full.records_checked, full.checkpoints_checked) == (10_001, 2)
    resumed = ledger.audit(start=10_000)  # from the checkpoint of the bulk append
    assert (resumed.records_checked, resumed.checkpoints_checked) == (1, 2)
    assert resumed.root_hash == full.root_hash
    assert ledger.audit(start=1_234).root_hash == full.root_hash
    with pytest.raises(log_module.LedgerError, match="cannot start an audit at leaf 10002"):
        ledger.audit(start=10_002)


def test_audit_fails_on_a_rewritten_checkpoint_a_deleted_node_and_a_leaf_gap(ledger):
    for i in range(6):
        ledger.append(rec(i))
    good = ledger.audit()
    row = (
        sqlite3.connect(ledger.path)
        .execute("SELECT root_hash, note FROM checkpoints WHERE tree_size=4")
        .fetchone()
    )
    _tamper(ledger, "UPDATE checkpoints SET note=? WHERE tree_size=4", row[1].replace("4\n", "5\n"))
    with pytest.raises(AuditFailure, match="checkpoint at size 4"):
        ledger.audit()
    _tamper(ledger, "UPDATE checkpoints SET note=? WHERE tree_size=4", row[1])
    _tamper(ledger, "UPDATE checkpoints SET root_hash=? WHERE tree_size=4", b"\x00" * 32)
    with pytest.raises(AuditFailure, match="checkpoint at size 4: signed root"):
        ledger.audit()
    _tamper(ledger, "UPDATE checkpoints SET root_hash=? WHERE tree_size=4", row[0])
    assert ledger.audit() == good
    _tamper(ledger, "DELETE FROM nodes WHERE level=1 AND idx=1")
    with pytest.raises(AuditFailure, match=r"node \(level 1, index 1\) is missing"):
        ledger.audit()


def test_audit_finds_a_gap_in_the_leaves(ledger):
    for i in range(5):
        ledger.append(rec(i))
    _tamper(ledger, "DELETE FROM leaves WHERE leaf_index=2")
    with pytest.raises(AuditFailure, match="leaf index 2 is missing"):
        ledger.audit()


def test_a_forged_leaf_with_recomputed_nodes_fails_on_the_checkpoint_signature(ledger):
    """Replace a leaf and recompute every stored hash and root: only the node key's signature
    on the checkpoints can tell, and it does."""
    for i in range(4):
        ledger.append(rec(i))
    forged = sign_record(replace(rec(3), cid="bafkreiforged"), OWNER)
    db = sqlite3.connect(ledger.path)
    db.execute(
        "UPDATE leaves SET leaf=?, cid=? WHERE leaf_index=3", (forged.leaf_bytes(), forged.cid)
    )

    leaves = [
        leaf_hash(bytes(r[0])) for r in db.execute("SELECT leaf FROM leaves ORDER BY leaf_index")
    ]
    db.execute("UPDATE nodes SET hash=? WHERE level=0 AND idx=3", (leaves[3],))
    level1 = node_hash(leaves[2], leaves[3])
    db.execute("UPDATE nodes SET hash=? WHERE level=1 AND idx=1", (level1,))
    root = node_hash(node_hash(leaves[0], leaves[1]), level1)
    db.execute("UPDATE nodes SET hash=? WHERE level=2 AND idx=0", (root,))
    db.execute("UPDATE checkpoints SET root_hash=? WHERE tree_size=4", (root,))
    db.commit()
    db.close()
    with pytest.raises(AuditFailure, match="checkpoint at size 4: signed root"):
        ledger.audit()
