"""Signed tree heads in the C2SP tlog-checkpoint / signed-note format."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from blockimage.ledger.checkpoint import (
    Checkpoint,
    InvalidCheckpointError,
    open_checkpoint,
    sign_checkpoint,
)

ROOT = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")


def test_note_layout_follows_the_c2sp_formats():
    key = Ed25519PrivateKey.generate()
    note = sign_checkpoint(Checkpoint("example.org/log", 8, ROOT), key, name="example.org/log")
    body, sigs = note.split("\n\n")
    assert body.split("\n") == ["example.org/log", "8", base64.b64encode(ROOT).decode()]
    assert sigs.startswith("\u2014 example.org/log ") and sigs.endswith("\n")
    raw = base64.b64decode(sigs.strip().rsplit(" ", 1)[1])
    public = key.public_key().public_bytes_raw()
    expected_id = hashlib.sha256(b"example.org/log\n\x01" + public).digest()[:4]
    assert raw[:4] == expected_id and len(raw) == 4 + 64
    key.public_key().verify(raw[4:], (body + "\n").encode())


def test_open_returns_the_signed_values():
    key = Ed25519PrivateKey.generate()
    note = sign_checkpoint(Checkpoint("o", 3, ROOT), key, name="o")
    cp = open_checkpoint(note, key.public_key().public_bytes_raw(), name="o")
    assert (cp.origin, cp.tree_size, cp.root_hash) == ("o", 3, ROOT)


def test_a_changed_size_or_a_foreign_key_is_refused():
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    note = sign_checkpoint(Checkpoint("o", 3, ROOT), key, name="o")
    with pytest.raises(InvalidCheckpointError, match="does not verify"):
        open_checkpoint(note.replace("\n3\n", "\n4\n", 1), public, name="o")
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(InvalidCheckpointError, match="no signature by o"):
        open_checkpoint(note, other, name="o")
    with pytest.raises(InvalidCheckpointError, match="no signature block"):
        open_checkpoint("o\n3\n", public, name="o")
