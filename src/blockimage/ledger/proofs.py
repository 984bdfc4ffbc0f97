"""Checking the embedded log's evidence: the one routine behind verdicts, bundles and receipts.

A record is believed only when all of these hold (each can be redone by a third party with
the record's leaf bytes, the proof and the log's public key, see README "Checking a receipt
without BlockImage"):

1. the leaf parses as a record whose owner signature verifies over its canonical bytes;
2. the checkpoint is a signed note by the log key, for the log's origin, and signs the proof's
   tree size and root;
3. the RFC 9162 inclusion path leads from SHA-256(0x00 || leaf) to that root.

:func:`check_log_proof` does the three; :func:`log_origin` and :func:`note_verifier_key` name the
log the way its checkpoints and Go's ``golang.org/x/mod/sumdb/note`` do. Pure functions.
"""

from __future__ import annotations

import base64

from ..errors import BlockImageError
from ..records import (
    InvalidRecordSignatureError,
    LogProof,
    Record,
    RecordFormatError,
    verify_record_signature,
)
from .checkpoint import Checkpoint, InvalidCheckpointError, key_id, open_checkpoint
from .merkle import (
    InvalidConsistencyProofError,
    InvalidInclusionProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "InvalidProofError",
    "check_log_proof",
    "check_consistency",
    "check_inclusion",
    "open_log_checkpoint",
    "log_origin",
    "note_verifier_key",
    "parse_verifier_key",
]


class InvalidProofError(BlockImageError, ValueError):
    """A log proof does not check (the message says which part: record, checkpoint, inclusion
    or consistency)."""


def log_origin(public_key: bytes) -> str:
    """The origin line of a BlockImage log's checkpoints: named after its key."""
    return f"blockimage/{public_key.hex()[:16]}"


def note_verifier_key(origin: str, public_key: bytes) -> str:
    """The log's verifier key as Go's note package reads it: ``name+keyhash+base64(0x01||key)``."""
    encoded = base64.b64encode(b"\x01" + public_key).decode("ascii")
    return f"{origin}+{key_id(origin, public_key).hex()}+{encoded}"


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    """(origin, 32-byte Ed25519 key) from a verifier key in note form, or from a key in hex
    (then the origin is the one a BlockImage log with that key has)."""
    text = text.strip()
    if "+" not in text:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise InvalidProofError(
                f"{text[:80]!r} is not a log key: give 64 hex digits or the note form "
                "name+keyhash+base64 that `blockimage log-key` prints"
            )
        return log_origin(key), key
    name, _, rest = text.partition("+")  # names hold no "+"; base64 may
    hash_hex, _, encoded = rest.partition("+")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        raw = b""
    if not name or len(raw) != 33 or raw[0] != 1:
        raise InvalidProofError(f"{text[:80]!r} is not an Ed25519 verifier key in note form")
    if key_id(name, raw[1:]).hex() != hash_hex:
        raise InvalidProofError(f"the verifier key for {name} has a key hash that does not match")
    return name, raw[1:]


def check_log_proof(proof: LogProof, public_key: bytes, *, origin: str) -> Record:
    """The record in ``proof`` once its signature, checkpoint and inclusion all check; raise
    :class:`InvalidProofError` at the first that does not."""
    try:
        record = Record.from_leaf(proof.leaf)
        verify_record_signature(record)
    except (RecordFormatError, InvalidRecordSignatureError) as exc:
        raise InvalidProofError(f"record: {exc}") from None
    if record.leaf_bytes() != proof.leaf:
        raise InvalidProofError(
            f"record: the leaf of {record.record_id} is not the record's canonical encoding"
        )
    check_inclusion(proof, public_key, origin=origin)
    return record


def check_inclusion(proof: LogProof, public_key: bytes, *, origin: str) -> Checkpoint:
    """That ``proof.leaf`` is in the tree of a checkpoint signed by the log key (whatever the
    leaf holds: a record or an event); the checkpoint, or :class:`InvalidProofError`."""
    checkpoint = open_log_checkpoint(proof.checkpoint, public_key, origin=origin)
    if checkpoint.tree_size != proof.tree_size or checkpoint.root_hash.hex() != proof.root_hash:
        raise InvalidProofError(
            f"checkpoint: it signs size {checkpoint.tree_size} root "
            f"{checkpoint.root_hash.hex()}, the proof says size {proof.tree_size} root "
            f"{proof.root_hash}"
        )
    try:
        path = [bytes.fromhex(h) for h in proof.inclusion_path]
        verify_inclusion(
            leaf_hash(proof.leaf), proof.leaf_index, proof.tree_size, path, checkpoint.root_hash
        )
    except (ValueError, InvalidInclusionProofError) as exc:
        raise InvalidProofError(f"inclusion proof of leaf {proof.leaf_index}: {exc}") from None
    return checkpoint


def check_consistency(old: Checkpoint, new: Checkpoint, path: list[bytes]) -> None:
    """That the tree of ``old`` is a prefix of the tree of ``new`` (RFC 9162 2.1.4.2)."""
    if old.tree_size > new.tree_size:
        raise InvalidProofError(
            f"consistency: the log has {new.tree_size} leaves, fewer than the {old.tree_size} "
            "an earlier checkpoint signed (a rollback)"
        )
    if old.tree_size == new.tree_size:
        if old.root_hash != new.root_hash:
            raise InvalidProofError(
                f"consistency: two checkpoints for size {old.tree_size} sign different roots "
                "(a fork)"
            )
        return
    if old.tree_size == 0:
        return
    try:
        verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, path)
    except InvalidConsistencyProofError as exc:
        raise InvalidProofError(
            f"consistency from size {old.tree_size} to {new.tree_size}: {exc}"
        ) from None


def open_log_checkpoint(note: str, public_key: bytes, *, origin: str) -> Checkpoint:
    """A checkpoint of the log ``origin`` signed by ``public_key``; :class:`InvalidProofError`
    otherwise."""
    try:
        checkpoint = open_checkpoint(note, public_key, name=origin)
    except InvalidCheckpointError as exc:
        raise InvalidProofError(f"checkpoint: {exc}") from None
    if checkpoint.origin != origin:
        raise InvalidProofError(f"checkpoint: it is for log {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
