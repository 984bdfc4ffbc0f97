"""Evidence a third party checks without trusting the node: checkpoint, consistency proof, log key
and saved receipts, through the CLI and through an independent Go checker (tools/evidence-check:
golang.org/x/mod/sumdb/note, transparency-dev/merkle and formats, gowebpki/jcs; no BlockImage
code)."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from blockimage.cli import cli
from blockimage.ledger.checkpoint import open_checkpoint
from blockimage.ledger.merkle import verify_consistency
from blockimage.ledger.proofs import parse_verifier_key

ROOT = Path(__file__).resolve().parent.parent


def run(home, *args):
    return CliRunner().invoke(cli, ["--home", str(home), *args])


@pytest.fixture(scope="module")
def checker() -> Path:
    """tools/evidence-check built with Go into .cache (modules from the Go proxy, go.sum pinned)."""
    go = shutil.which("go")
    assert go, "Go is needed to build tools/evidence-check (as for Kubo and Fabric)"
    out = ROOT / ".cache" / "evidence-check" / "evidence-check"
    subprocess.run(
        [go, "build", "-trimpath", "-o", str(out), "."],
        cwd=ROOT / "tools" / "evidence-check",
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def log(home, photo_file, tmp_path):
    """A receipt saved after the first registration, then two more registrations."""
    first = run(home, "--json", "register", str(photo_file("coffee")), "--owner", "alice")
    assert first.exit_code == 0, first.output
    receipt = tmp_path / "receipt.json"
    receipt.write_text(first.stdout)
    for name in ("astronaut", "chelsea"):
        assert run(home, "register", str(photo_file(name)), "--owner", "bob").exit_code == 0
    return receipt


def test_log_key_checkpoint_and_consistency_commands(home, log):
    key_text = run(home, "log-key").stdout.strip()
    origin, public = parse_verifier_key(key_text)
    doc = json.loads(run(home, "log-key", "--json").stdout)
    assert doc["public_key"] == public.hex() and doc["origin"] == origin
    note = json.loads(run(home, "checkpoint", "--json").stdout)["checkpoint"]
    latest = open_checkpoint(note, public, name=origin)
    assert latest.tree_size == 3 and run(home, "checkpoint").stdout == note
    receipt = json.loads(log.read_text())
    old = open_checkpoint(receipt["log"]["checkpoint"], public, name=origin)
    proof = json.loads(run(home, "consistency", "1", "--json").stdout)
    assert (proof["old_size"], proof["new_size"]) == (1, 3)
    path = [bytes.fromhex(h) for h in proof["proof"]]
    verify_consistency(1, 3, old.root_hash, latest.root_hash, path)
    lines = run(home, "consistency", "2", "3").stdout.split()  # text: one hash a line
    assert lines == json.loads(run(home, "consistency", "2", "--json").stdout)["proof"]
    bad = run(home, "consistency", "4")
    assert bad.exit_code == 1 and "OLD_SIZE <= NEW_SIZE <= 3" in bad.stderr


def test_verify_receipt_checks_signature_inclusion_and_consistency(home, log, tmp_path):
    ok = run(home, "verify-receipt", str(log))
    assert ok.exit_code == 0 and ok.stdout.startswith("ok: record")
    assert "size 3" in ok.stdout and "consistency proof checked" in ok.stdout
    doc = json.loads(log.read_text())
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**doc, "owner": "mallory"}))
    result = run(home, "verify-receipt", str(forged))
    assert result.exit_code == 1 and "receipt INVALID" in result.stderr
    assert "differ from the signed leaf" in result.stderr
    other = tmp_path / "other-home"  # a receipt of another log: not signed by this log's key
    result = run(other, "verify-receipt", str(log))
    assert result.exit_code == 1 and "checkpoint" in result.stderr


def test_a_receipt_proves_a_rollback_that_the_node_itself_was_made_to_forget(
    home, log, photo_file, tmp_path
):
    """The newest leaf removed with its nodes, its checkpoint and the node's own memory
    (ledger.head) passes every check inside the home; the holder of its receipt proves it."""
    newest = run(home, "--json", "register", str(photo_file("rocket")), "--owner", "carol")
    saved = tmp_path / "newest.json"
    saved.write_text(newest.stdout)
    assert json.loads(newest.stdout)["log"]["tree_size"] == 4
    with sqlite3.connect(home / "ledger.db") as db:
        db.execute("DELETE FROM leaves WHERE leaf_index = 3")
        db.execute("DELETE FROM nodes WHERE (level, idx) IN ((0, 3), (1, 1), (2, 0))")
        db.execute("DELETE FROM checkpoints WHERE tree_size = 4")
    (home / "ledger.head").unlink()
    assert run(home, "audit").exit_code == 0  # consistent in itself
    result = run(home, "verify-receipt", str(saved))
    assert result.exit_code == 1 and "receipt INVALID" in result.stderr
    assert "fewer than the 4 an earlier checkpoint signed (a rollback)" in result.stderr
    assert run(home, "verify-receipt", str(log)).exit_code == 0  # older receipts still hold


def test_the_independent_go_checker_accepts_a_receipt_and_its_consistency(
    home, log, checker, tmp_path
):
    key = run(home, "log-key").stdout.strip()
    (tmp_path / "latest.txt").write_text(run(home, "checkpoint").stdout)
    (tmp_path / "consistency.json").write_text(run(home, "consistency", "1", "--json").stdout)
    args = [str(checker), "-log-key", key, str(log), str(tmp_path / "latest.txt")]
    done = subprocess.run(
        [*args, str(tmp_path / "consistency.json")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "owner signature: valid over the RFC 8785 bytes" in done.stdout
    assert "inclusion: leaf 0 of 1" in done.stdout
    assert "consistency: the log at size 3 extends the receipt's size 1" in done.stdout

    def refused(receipt: dict, consistency: str | None = None, log_key: str = key) -> str:
        path = tmp_path / "case.json"
        path.write_text(json.dumps(receipt))
        proof = tmp_path / "proof.json"
        proof.write_text(consistency or (tmp_path / "consistency.json").read_text())
        argv = [str(checker), "-log-key", log_key, str(path), str(tmp_path / "latest.txt")]
        done = subprocess.run([*argv, str(proof)], capture_output=True, text=True)
        assert done.returncode == 1, done.stdout
        return done.stderr

    doc = json.loads(log.read_text())
    leaf = base64.b64decode(doc["log"]["leaf"]).replace(b'"owner":"alice"', b'"owner":"mallory"')
    forged = {**doc, "log": {**doc["log"], "leaf": base64.b64encode(leaf).decode()}}
    assert "owner signature does not verify" in refused(forged)
    other_key = run(tmp_path / "other", "log-key").stdout.strip()
    assert "checkpoint signature" in refused(doc, log_key=other_key)
    proof = json.loads((tmp_path / "consistency.json").read_text())
    proof["proof"][0] = "00" * 32
    assert "consistency proof" in refused(doc, json.dumps(proof))
