"""Keys kept in the node's home: the node key, one key per owner, the watermark key, the API token.

All key files are created with mode 0600 and never overwritten: a new key is written to a
temporary file and hard-linked into place, so two processes racing to create the same owner key
end up using the same one.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import BlockImageError

__all__ = ["KeyStore", "OWNER_NAME_RE", "InvalidOwnerError", "KeyFileError", "check_owner_name"]

OWNER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class InvalidOwnerError(BlockImageError, ValueError):
    """An owner name is not usable (it names a key file and appears in records)."""


class KeyFileError(BlockImageError, ValueError):
    """A key file in the home is unreadable or does not hold a key of the expected kind."""


def check_owner_name(name: str) -> str:
    if not OWNER_NAME_RE.match(name or ""):
        raise InvalidOwnerError(
            f"invalid owner name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


class KeyStore:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def node_key(self) -> Ed25519PrivateKey:
        return self._ed25519(self.dir / "node.key")

    def owner_key(self, owner: str) -> Ed25519PrivateKey:
        check_owner_name(owner)
        return self._ed25519(self.dir / "owners" / f"{owner}.key")

    def watermark_key(self) -> bytes:
        return self._secret(self.dir / "watermark.key", 32)

    def api_token(self) -> str:
        return self._secret(self.dir / "api_token", 32).hex()

    # -- internals --------------------------------------------------------------------------------
    def _ed25519(self, path: Path) -> Ed25519PrivateKey:
        if not path.exists():
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _create_private_file(path, pem)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path} is not a readable PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} does not hold an Ed25519 private key")
        return key

    def _secret(self, path: Path, size: int) -> bytes:
        if not path.exists():
            _create_private_file(path, secrets.token_bytes(size).hex().encode() + b"\n")
        try:
            value = bytes.fromhex(path.read_text().strip())
        except (ValueError, UnicodeDecodeError):
            value = b""
        if len(value) != size:
            raise KeyFileError(f"{path} should hold {size} bytes in hex")
        return value


def _create_private_file(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process created it first: keep theirs
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
