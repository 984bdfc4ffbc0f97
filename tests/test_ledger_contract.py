"""The Ledger Protocol contract, run against both backends: the embedded Merkle log and Fabric.

The Fabric network is shared by the whole session, so these tests never assume an empty ledger:
they use fresh random ids and hashes and compare sizes before and after.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.test_records import make_record

from blockimage.errors import DuplicateContentError
from blockimage.ledger import DuplicateRecordError, Ledger, LedgerError, RecordNotFoundError
from blockimage.ledger.log import MerkleLog
from blockimage.ledger.merkle import leaf_hash, verify_inclusion
from blockimage.records import (
    FabricProof,
    InvalidRecordSignatureError,
    LogProof,
    canonical_json,
    sign_record,
)

OWNER = Ed25519PrivateKey.generate()


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fresh(key: Ed25519PrivateKey = OWNER, **changes):
    """A signed record with a random id and random content hashes, timestamped now."""
    fields = {
        "record_id": secrets.token_hex(8),
        "sha256_file": secrets.token_hex(32),
        "sha256_pixels": secrets.token_hex(32),
        "original_sha256_file": secrets.token_hex(32),
        "created_at": now(),
        **changes,
    }
    return sign_record(make_record(key, **fields), key)


@pytest.fixture(params=["merkle", "fabric"])
def ledger(request, tmp_path):
    if request.param == "merkle":
        lg = MerkleLog(tmp_path / "ledger.db", Ed25519PrivateKey.generate(), origin="test/log")
    else:
        from blockimage.ledger.fabric import FabricLedger

        lg = FabricLedger(request.getfixturevalue("fabric").settings())
    yield lg
    lg.close()


def check_proof(proof, record) -> None:
    assert proof.leaf == record.leaf_bytes()
    if isinstance(proof, LogProof):
        verify_inclusion(
            leaf_hash(proof.leaf),
            proof.leaf_index,
            proof.tree_size,
            [bytes.fromhex(h) for h in proof.inclusion_path],
            bytes.fromhex(proof.root_hash),
        )
    else:
        assert isinstance(proof, FabricProof)
        assert proof.validation_code == "VALID"
        assert proof.block_number >= 1 and len(proof.tx_id) == 64
        assert proof.channel == "blockimage" and proof.msp_id == "Org1MSP"
        assert len(proof.block_data_hash) == 64


def test_is_a_ledger(ledger):
    assert isinstance(ledger, Ledger)


def test_append_returns_a_proof_and_the_record_reads_back_identical(ledger):
    record = fresh()
    check_proof(ledger.append(record), record)
    assert ledger.get(record.record_id) == record
    later = ledger.proof(record.record_id)
    check_proof(later, record)
    if isinstance(later, FabricProof):  # the same transaction, found again from the block
        assert later.tx_id == ledger.proof(record.record_id).tx_id


def test_unusual_strings_keep_their_exact_signed_bytes(ledger):
    # The chaincode re-derives canonical JSON in Go and checks the signature over it: quotes,
    # backslashes, control characters, HTML characters and non-ASCII must encode as in Python.
    record = fresh(owner='Zoë "Q" <b>&amp; \\ \t\x01\u2028 東京')
    ledger.append(record)
    assert ledger.get(record.record_id).leaf_bytes() == record.leaf_bytes()
    assert ledger.by_owner(record.owner) == [record]


def test_lookups_by_hash_owner_and_history(ledger):
    owner = f"owner-{secrets.token_hex(4)}"
    a = fresh(owner=owner)
    b = fresh(parent=a.record_id)
    c = fresh(parent=b.record_id)
    d = fresh(parent=a.record_id)
    for r in (a, b, c, d):
        ledger.append(r)
    assert ledger.find_by_sha256(a.sha256_file) == [a]
    assert ledger.find_by_sha256(b.sha256_pixels) == [b]
    assert ledger.find_by_sha256(c.original_sha256_file) == [c]
    assert ledger.find_by_sha256(secrets.token_hex(32)) == []
    assert ledger.by_owner(owner) == [a]
    # Log order (on Fabric, block and position: the four share one created_at second).
    assert [r.record_id for r in ledger.history(a.record_id)] == [r.record_id for r in (a, b, c, d)]
    assert [r.record_id for r in ledger.history(b.record_id)] == [b.record_id, c.record_id]
    with pytest.raises(RecordNotFoundError):
        ledger.get(secrets.token_hex(8))
    with pytest.raises(RecordNotFoundError):
        ledger.history(secrets.token_hex(8))


def test_records_lists_new_entries_in_order_from_a_position(ledger):
    before = ledger.size()
    new = [fresh() for _ in range(3)]
    for r in new:
        ledger.append(r)
    assert ledger.size() == before + 3
    listed = list(ledger.records(before))
    assert [i for i, _ in listed] == [before, before + 1, before + 2]
    assert [r for _, r in listed] == new
    assert [r.record_id for _, r in ledger.records()][before:] == [r.record_id for r in new]


def test_duplicates_and_bad_signatures_are_refused_and_nothing_is_written(ledger):
    record = fresh()
    ledger.append(record)
    size = ledger.size()
    with pytest.raises(DuplicateRecordError):
        ledger.append(record)
    with pytest.raises(DuplicateRecordError):
        ledger.append(sign_record(replace(fresh(), record_id=record.record_id), OWNER))
    with pytest.raises(InvalidRecordSignatureError):
        ledger.append(replace(fresh(), owner="mallory"))
    assert ledger.size() == size


def test_a_second_original_of_registered_content_is_refused(ledger):
    first = fresh()
    ledger.append(first)
    size = ledger.size()
    for reused in (
        {"sha256_pixels": first.sha256_pixels},  # the registered pixels again
        {"sha256_file": first.sha256_file},
        {"original_sha256_file": first.original_sha256_file},  # the same submitted file
        {"original_sha256_file": first.sha256_file},  # the registered file, submitted anew
    ):
        with pytest.raises(DuplicateContentError, match=first.record_id):
            ledger.append(fresh(**reused))
    assert ledger.size() == size
    # A derivative may come from the same submitted file: it names its parent.
    ledger.append(fresh(original_sha256_file=first.original_sha256_file, parent=first.record_id))
    assert ledger.size() == size + 1


def test_a_check_that_refuses_writes_nothing(ledger):
    size = ledger.size()

    def refuse() -> None:
        raise DuplicateContentError("refused by the check")

    with pytest.raises(DuplicateContentError, match="refused by the check"):
        ledger.append(fresh(), check=refuse)
    assert ledger.size() == size
    ran = []
    ledger.append(fresh(), check=lambda: ran.append(True))
    assert ran == [True] and ledger.size() == size + 1


def test_audit_passes_and_counts_every_record(ledger):
    for _ in range(2):
        ledger.append(fresh())
    report = ledger.audit()
    assert report.records_checked == ledger.size() >= 2
    assert len(report.root_hash) == 64


def test_transfers_and_notes_need_the_current_owner_signature(ledger):
    record = fresh()
    ledger.append(record)
    bob, carol = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    bob_key = bob.public_key().public_bytes_raw().hex()
    with pytest.raises(LedgerError, match="not signed by its current owner"):
        ledger.add_event(record.record_id, "transfer", bob, to="bob", to_key=bob_key)
    done = ledger.add_event(record.record_id, "transfer", OWNER, to="bob", to_key=bob_key)
    assert done["record_id"] == record.record_id and done["at"]
    with pytest.raises(LedgerError, match="not signed by its current owner"):
        ledger.add_event(record.record_id, "note", OWNER, note="still mine?")  # not any more
    ledger.add_event(record.record_id, "note", bob, note="sold at auction")
    with pytest.raises(LedgerError, match="not signed by its current owner"):
        ledger.add_event(record.record_id, "note", carol, note="mine now")
    with pytest.raises(LedgerError, match="not one of transfer, note"):
        ledger.add_event(record.record_id, "delete", bob)
    with pytest.raises(RecordNotFoundError):
        ledger.add_event("00000000000000ff", "note", bob, note="x")
    events = ledger.events(record.record_id)
    assert [e["kind"] for e in events] == ["transfer", "note"]  # log order
    assert events[0]["to_key"] == bob_key and events[1]["note"] == "sold at auction"
    # The stored event still verifies: the signature covers it without what the ledger added.
    signed = {
        k: v for k, v in events[0].items() if k not in ("at", "tx_id", "leaf_index", "signature")
    }
    OWNER.public_key().verify(bytes.fromhex(events[0]["signature"]), canonical_json(signed))
    assert ledger.history(record.record_id) == [record]  # events are not records
