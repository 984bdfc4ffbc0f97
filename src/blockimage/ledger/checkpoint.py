"""Signed tree heads in the C2SP formats used by Go's sumdb and transparency logs.

- tlog-checkpoint (https://c2sp.org/tlog-checkpoint): the body is three lines —
  origin, tree size in decimal, base64 of the root hash — each ending in a newline.
- signed-note (https://c2sp.org/signed-note): the body, an empty line, then one line per
  signature: ``— <key name> <base64(key id || signature)>``. For Ed25519 keys the key id is the
  first 4 bytes of SHA-256(key name || 0x0A || 0x01 || 32-byte public key), and the signature is
  over the body bytes.

Any tool that speaks these formats (e.g. ``golang.org/x/mod/sumdb/note``) can check our heads.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import BlockImageError

__all__ = [
    "Checkpoint",
    "InvalidCheckpointError",
    "sign_checkpoint",
    "open_checkpoint",
    "key_id",
]

_ALG_ED25519 = b"\x01"
_SIG_PREFIX = "\u2014 "  # em dash and a space


class InvalidCheckpointError(BlockImageError, ValueError):
    """A checkpoint is malformed or its signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes

    def body(self) -> bytes:
        root = base64.b64encode(self.root_hash).decode("ascii")
        return f"{self.origin}\n{self.tree_size}\n{root}\n".encode()


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ALG_ED25519 + public_key).digest()[:4]


def sign_checkpoint(checkpoint: Checkpoint, key: Ed25519PrivateKey, *, name: str) -> str:
    """The signed note text of ``checkpoint``, signed by ``key`` under key name ``name``."""
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise ValueError(f"invalid signer name {name!r}")
    body = checkpoint.body()
    public = key.public_key().public_bytes_raw()
    sig = base64.b64encode(key_id(name, public) + key.sign(body)).decode("ascii")
    return body.decode() + "\n" + f"{_SIG_PREFIX}{name} {sig}\n"


def open_checkpoint(note: str, public_key: bytes, *, name: str) -> Checkpoint:
    """Parse a signed checkpoint and verify its signature by ``name`` / ``public_key``.

    Raises :class:`InvalidCheckpointError` if the note is malformed, carries no signature by
    that key, or the signature does not verify.
    """
    body_text, sep, sigs = note.partition("\n\n")
    if not sep:
        raise InvalidCheckpointError("checkpoint has no signature block")
    body = (body_text + "\n").encode()
    lines = body_text.split("\n")
    if len(lines) < 3:
        raise InvalidCheckpointError("checkpoint body needs origin, size and root lines")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except ValueError as exc:
        raise InvalidCheckpointError(f"checkpoint size or root is malformed: {exc}") from None
    if size < 0 or len(root) != 32 or str(size) != lines[1]:
        raise InvalidCheckpointError("checkpoint size or root hash has the wrong form")
    want_id = key_id(name, public_key)
    for line in sigs.splitlines():
        if not line.startswith(_SIG_PREFIX):
            raise InvalidCheckpointError(f"malformed signature line {line!r}")
        signer, _, blob = line[len(_SIG_PREFIX) :].rpartition(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except ValueError:
            raise InvalidCheckpointError("signature is not base64") from None
        if signer != name or raw[:4] != want_id:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], body)
        except InvalidSignature:
            raise InvalidCheckpointError(
                f"checkpoint signature by {name} does not verify (size {size})"
            ) from None
        return Checkpoint(lines[0], size, root)
    raise InvalidCheckpointError(f"checkpoint carries no signature by {name}")
