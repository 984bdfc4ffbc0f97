"""Transfers and notes on the embedded Merkle log: signed by the current owner, leaves of the same
tree, checked on every read and by the audit; the CLI's `transfer`, `note`, `history`, `verify`.
(The contract both ledgers meet is in test_ledger_contract.py.)"""

from __future__ import annotations

import json
import sqlite3

import dag_cbor
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.test_ledger_contract import OWNER, fresh

from blockimage.bundle import InvalidBundleError, verify_bundle
from blockimage.cli import cli
from blockimage.ledger import AuditFailure, LedgerError, LedgerIntegrityError
from blockimage.ledger.events import sign_event
from blockimage.ledger.log import MerkleLog
from blockimage.records import jcs
from blockimage.storage.car import read_car, write_car
from blockimage.storage.unixfs import DAG_CBOR, block_cid

NODE = Ed25519PrivateKey.generate()
OWNER_KEY = OWNER.public_key().public_bytes_raw().hex()


def run(home, *args):
    return CliRunner().invoke(cli, ["--home", str(home), *args])


@pytest.fixture
def log(tmp_path):
    lg = MerkleLog(tmp_path / "ledger.db", NODE, origin="test/log")
    yield lg
    lg.close()


def test_events_share_the_tree_and_pass_the_audit(log):
    first, second = fresh(), fresh()
    log.append(first)
    bob = Ed25519PrivateKey.generate()
    bob_key = bob.public_key().public_bytes_raw().hex()
    moved = log.add_event(first.record_id, "transfer", OWNER, to="bob", to_key=bob_key)
    log.append(second)
    log.add_event(first.record_id, "note", bob, note="framed print, 2/10")
    assert moved["leaf_index"] == 1 and log.size() == 4
    assert [i for i, _ in log.records()] == [0, 2]  # records only, at their own leaves
    report = log.audit()
    assert report.tree_size == 4 and report.records_checked == 2
    assert log.proof(second.record_id).leaf_index == 2
    # The same transfer made twice is two events (a fresh nonce); a replay of the signed bytes
    # of one is refused.
    log.add_event(first.record_id, "transfer", bob, to="alice", to_key=OWNER_KEY)  # back
    with pytest.raises(LedgerError, match="replay"):  # alice owns it again: only the bytes repeat
        log._append_signed_event({k: v for k, v in moved.items() if k not in ("at", "leaf_index")})
    again = log.add_event(first.record_id, "transfer", OWNER, to="bob", to_key=bob_key)
    assert again["signature"] != moved["signature"] and log.audit().tree_size == 6


def test_an_event_leaf_edited_in_the_database_is_caught(log):
    record = fresh()
    log.append(record)
    log.add_event(record.record_id, "note", OWNER, note="original caption")
    log.append(fresh())  # the event leaf now has a sibling in the proof
    with sqlite3.connect(log.path) as db:
        (leaf,) = db.execute("SELECT leaf FROM events").fetchone()
        db.execute("UPDATE events SET leaf=?", (bytes(leaf).replace(b"original", b"doctored"),))
    with pytest.raises(LedgerIntegrityError, match="event at leaf 1"):
        log.events(record.record_id)
    with pytest.raises(AuditFailure, match="leaf 1"):
        log.audit()


def test_the_audit_replays_ownership_through_transfers(log):
    """A node that wrote an event its signer could not sign (its own code bypassed, the leaf
    and checkpoint produced with the node key) is caught by the audit's replay of owners."""
    record = fresh()
    log.append(record)
    mallory = Ed25519PrivateKey.generate()
    forged = sign_event(record.record_id, "note", mallory, note="mine")
    with log._transaction() as db:
        leaf = jcs({**forged, "at": "2026-11-28T00:00:00Z"})
        db.execute(
            "INSERT INTO events VALUES (1, ?, ?, ?)", (leaf, record.record_id, forged["signature"])
        )
        log._add_nodes(db, 1, leaf)
        log._sign_checkpoint(db, 2)
    with pytest.raises(AuditFailure, match="not signed by the record's owner at that point"):
        log.audit()
    with pytest.raises(LedgerIntegrityError, match="did not own the record then"):
        log.events(record.record_id)


def test_a_log_made_before_events_is_upgraded_in_place(tmp_path):
    log = MerkleLog(tmp_path / "ledger.db", NODE, origin="test/log")
    record = fresh()
    log.append(record)
    log.close()
    with sqlite3.connect(tmp_path / "ledger.db") as db:  # as version 1 left it
        db.execute("DROP TABLE events")
        db.execute("PRAGMA user_version=1")
    log = MerkleLog(tmp_path / "ledger.db", NODE, origin="test/log")
    assert log.events(record.record_id) == []
    log.add_event(record.record_id, "note", OWNER, note="after the upgrade")
    assert log.audit().tree_size == 2
    log.close()


def test_cli_transfer_note_history_and_verify(home, photo_file, tmp_path):
    made = run(home, "--json", "register", str(photo_file("coffee")), "--owner", "alice")
    receipt = json.loads(made.stdout)
    record_id = receipt["record_id"]
    moved = run(home, "transfer", record_id, "--to", "bob")
    assert moved.exit_code == 0 and "transfer to bob" in moved.stdout
    again = run(home, "transfer", record_id, "--to", "carol")  # bob's key is in this home too
    assert again.exit_code == 0
    noted = run(home, "--json", "note", record_id, "print sold at auction")
    assert noted.exit_code == 0 and json.loads(noted.stdout)["kind"] == "note"
    history = json.loads(run(home, "--json", "history", record_id).stdout)
    assert [e["kind"] for e in history[0]["events"]] == ["transfer", "transfer", "note"]
    assert [e.get("to") for e in history[0]["events"]][:2] == ["bob", "carol"]
    text = run(home, "history", record_id).stdout.splitlines()
    assert text[0].split()[1] == record_id and "transfer to bob" in text[1]
    assert text[3].endswith("note: print sold at auction")
    verdict = json.loads(run(home, "--json", "verify", receipt["output"]).stdout)
    assert verdict["verdict"] == "authentic" and len(verdict["events"]) == 3
    assert any("now owned by carol" in line for line in verdict["explanation"])
    report = tmp_path / "report.html"
    assert run(home, "verify", receipt["output"], "--report", str(report)).exit_code == 0
    timeline = report.read_text().split('<ol class="timeline">')[1].split("</ol>")[0]
    assert timeline.count("<li>") == 4  # the registration, two transfers, the note
    assert "transferred to carol" in timeline and "sold at auction" in timeline
    # Only the current owner's key signs: a home without carol's key cannot add a note.
    (home / "keys" / "owners" / "carol.key").rename(tmp_path / "carol.key")
    refused = run(home, "note", record_id, "not mine to say")
    assert refused.exit_code == 1 and "belongs to carol" in refused.stderr
    assert run(home, "audit").exit_code == 0


def test_bundles_carry_the_events_and_refuse_a_forged_one(home, photo_file, tmp_path):
    receipt = json.loads(
        run(home, "--json", "register", str(photo_file("coffee")), "--owner", "alice").stdout
    )
    record_id = receipt["record_id"]
    assert run(home, "transfer", record_id, "--to", "bob").exit_code == 0
    assert run(home, "note", record_id, "on loan to the museum").exit_code == 0
    car = tmp_path / "evidence.car"
    assert run(home, "export", record_id, "-o", str(car)).exit_code == 0
    key = run(home, "log-key").stdout.strip()
    checked = CliRunner().invoke(cli, ["verify-bundle", str(car), "--log-key", key, "--json"])
    doc = json.loads(checked.stdout)
    assert checked.exit_code == 0 and [e["kind"] for e in doc["events"]] == ["transfer", "note"]
    # Rebuilt with the note's leaf altered, with one event twice, in the wrong order.
    data = car.read_bytes()
    parsed = read_car(data)
    evidence = dag_cbor.decode(parsed.blocks[parsed.roots[0]])

    def rebuilt(events) -> bytes:
        block = dag_cbor.encode({**evidence, "events": events})
        root = block_cid(block, DAG_CBOR)
        others = [(c, b) for c, b in parsed.blocks.items() if c != parsed.roots[0]]
        return write_car([root], [(root, block), *others])

    note = evidence["events"][1]
    altered = {**note, "leaf": note["leaf"].replace(b"museum", b"auction")}
    with pytest.raises(InvalidBundleError, match="event at leaf 2"):
        verify_bundle(rebuilt([evidence["events"][0], altered]))
    with pytest.raises(InvalidBundleError, match="out of log order"):  # one event twice
        verify_bundle(rebuilt([evidence["events"][0], evidence["events"][0]]))
    with pytest.raises(InvalidBundleError, match="did not own the record"):  # bob's note first
        verify_bundle(rebuilt(evidence["events"][::-1]))
    assert verify_bundle(rebuilt(evidence["events"][:1])).events[0]["to"] == "bob"
