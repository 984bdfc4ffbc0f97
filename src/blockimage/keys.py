"""Keys kept in the node's home: the node key, one key per owner, the watermark key, the API token.

All key files are created with mode 0600 and never overwritten: a new key is written to a
temporary file and hard-linked into place, so two processes racing to create the same owner key
end up using the same one.

A home must never quietly replace a key its records depend on: a new node key would make the
log fail its audit for ever, a new owner key would give an owner a second identity, a new
watermark key would make every existing mark unreadable. So every key the home makes is listed
in ``keys/manifest.json`` by its public part (the Ed25519 public key; for a secret, the SHA-256
of it), and a listed key that is missing or different is an error that says to restore the
``keys/`` folder from a backup. A key file that group or others may read is refused, as ssh
refuses one. Homes made before the manifest list their keys as they are first used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import BlockImageError
from .files import exclusive_lock

if TYPE_CHECKING:
    from .credentials import SigningIdentity

__all__ = ["KeyStore", "OWNER_NAME_RE", "InvalidOwnerError", "KeyFileError", "check_owner_name"]

OWNER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_RESTORE = "restore the keys/ folder from your backup (README: Backing up a home)"


class InvalidOwnerError(BlockImageError, ValueError):
    """An owner name is not usable (it names a key file and appears in records)."""


class KeyFileError(BlockImageError, ValueError):
    """A key file in the home is missing, unreadable, exposed, or not the key the home made."""


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
        return self._ed25519(self.dir / "node.key", "node")

    def owner_key(self, owner: str) -> Ed25519PrivateKey:
        check_owner_name(owner)
        return self._ed25519(self.dir / "owners" / f"{owner}.key", f"owner:{owner}")

    def has_owner_key(self, owner: str) -> bool:
        """Whether this home holds a key for ``owner`` (registering would not make one)."""
        check_owner_name(owner)
        return (self.dir / "owners" / f"{owner}.key").exists()

    def watermark_key(self) -> bytes:
        return self._secret(self.dir / "watermark.key", 32, "watermark")

    def api_token(self) -> str:
        # Not listed: a lost token is replaced by a new one without harm to any record.
        return self._secret(self.dir / "api_token", 32, None).hex()

    def c2pa_identity(self) -> SigningIdentity:
        """The node's Content Credentials signer (``c2pa/signer.key``, ``c2pa/chain.pem``, and
        ``c2pa/ca.pem`` to give verifiers as a trust anchor), made once and listed."""
        from .credentials import SigningIdentity, make_identity

        folder = self.dir / "c2pa"
        key, chain, anchor = folder / "signer.key", folder / "chain.pem", folder / "ca.pem"
        if not key.exists():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            with exclusive_lock(self.dir / ".c2pa.lock"):  # one identity however many race
                if not key.exists():
                    self._refuse_if_listed(chain, "c2pa")
                    made = make_identity()
                    _create_private_file(anchor, made.anchor_pem)
                    _create_private_file(chain, made.chain_pem)
                    _create_private_file(key, made.key_pem)  # last: its presence says done
        identity = SigningIdentity(_read(key), _read(chain), _read(anchor))
        self._check_listed(chain, "c2pa", hashlib.sha256(identity.chain_pem).hexdigest())
        return identity

    def import_c2pa_identity(self, identity: SigningIdentity) -> None:
        """Make ``identity`` (checked by :func:`blockimage.credentials.check_identity`) this
        home's Content Credentials signer, before the home made one of its own. A home keeps
        one signer: its registered files name it, and its verifier trusts its anchor."""
        folder = self.dir / "c2pa"
        key, chain, anchor = folder / "signer.key", folder / "chain.pem", folder / "ca.pem"
        if key.exists() or "c2pa" in self._manifest():
            if key.exists() and _read(chain) == identity.chain_pem:
                return  # the same chain again: nothing to do
            raise KeyFileError(
                f"this home already signs Content Credentials with the chain in {chain}; a home "
                "keeps one signer (import yours with `init` on a new home)"
            )
        self.dir.mkdir(exist_ok=True, mode=0o700)
        folder.mkdir(exist_ok=True, mode=0o700)
        with exclusive_lock(self.dir / ".c2pa.lock"):
            _create_private_file(anchor, identity.anchor_pem)
            _create_private_file(chain, identity.chain_pem)
            _create_private_file(key, identity.key_pem)
        self.c2pa_identity()  # lists it

    # -- internals --------------------------------------------------------------------------------
    def _ed25519(self, path: Path, entry: str) -> Ed25519PrivateKey:
        if not path.exists():
            self._refuse_if_listed(path, entry)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _create_private_file(path, pem)
        try:
            key = serialization.load_pem_private_key(_read(path), password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path} is not a readable PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} does not hold an Ed25519 private key")
        self._check_listed(path, entry, key.public_key().public_bytes_raw().hex())
        return key

    def _secret(self, path: Path, size: int, entry: str | None) -> bytes:
        if not path.exists():
            if entry is not None:
                self._refuse_if_listed(path, entry)
            _create_private_file(path, secrets.token_bytes(size).hex().encode() + b"\n")
        try:
            value = bytes.fromhex(_read(path).decode("ascii").strip())
        except (ValueError, UnicodeDecodeError):
            value = b""
        if len(value) != size:
            raise KeyFileError(f"{path} should hold {size} bytes in hex")
        if entry is not None:
            self._check_listed(path, entry, hashlib.sha256(value).hexdigest())
        return value

    # -- the manifest -----------------------------------------------------------------------------
    def _manifest(self) -> dict[str, str]:
        path = self.dir / "manifest.json"
        if not path.exists():
            return {}
        try:
            doc = json.loads(_read(path, private=False))
        except ValueError:
            raise KeyFileError(f"{path} is not the JSON this home wrote; {_RESTORE}") from None
        if not isinstance(doc, dict):
            raise KeyFileError(f"{path} is not the JSON this home wrote; {_RESTORE}")
        return {str(k): str(v) for k, v in doc.items()}

    def _refuse_if_listed(self, path: Path, entry: str) -> None:
        listed = self._manifest().get(entry)
        if listed is not None:
            raise KeyFileError(
                f"{path} is missing, but this home made it (public part {listed[:16]}…) and "
                f"its records depend on it; a new key would not do: {_RESTORE}"
            )

    def _check_listed(self, path: Path, entry: str, public: str) -> None:
        listed = self._manifest().get(entry)
        if listed == public:
            return
        if listed is not None:
            raise KeyFileError(
                f"{path} is not the key this home made (public part {public[:16]}…, expected "
                f"{listed[:16]}…); {_RESTORE}"
            )
        with exclusive_lock(self.dir / ".manifest.lock"):  # read-modify-write across processes
            doc = self._manifest()
            doc.setdefault(entry, public)
            tmp = self.dir / f".manifest.{secrets.token_hex(4)}.tmp"
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, self.dir / "manifest.json")
        if doc[entry] != public:  # another process listed another key first
            raise KeyFileError(f"{path} changed while it was being read; try again")


def _read(path: Path, *, private: bool = True) -> bytes:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path} is not a regular file; {_RESTORE}")
        if private and info.st_mode & 0o077:
            raise KeyFileError(
                f"{path} may be read by other users (mode {info.st_mode & 0o777:04o}); a "
                f"private key must not be: run `chmod 600 {path}`"
            )
        return path.read_bytes()
    except OSError as exc:  # a permission, an I/O error
        raise KeyFileError(f"{path} cannot be read ({exc.strerror or exc})") from None


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
