"""API tokens for ``blockimage serve``: who may register, as which owner.

A token belongs to one owner and registers only as that owner. ``TokenStore.create`` returns
the token once; the home keeps only its SHA-256 (``keys/api_tokens.json``, mode 0600), so a
copy of the home does not hand out write access. A token reads ``bit_<id>_<secret>``: the id
finds the entry, the secret's hash is compared in constant time (:func:`hmac.compare_digest`).

The node's own token (``keys/api_token``, made at ``init``, or ``BLOCKIMAGE_API_TOKEN``) is the
operator's: it may register as any owner, as the CLI on the machine can.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import BlockImageError
from .files import exclusive_lock, write_atomic
from .keys import check_owner_name

__all__ = ["ANY_OWNER", "TokenEntry", "TokenError", "TokenStore"]

ANY_OWNER = "*"  # the owner the operator's token may register as: any
_TOKEN_RE = re.compile(r"^bit_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_ID_RE = re.compile(r"^[0-9a-f]{12}$")


class TokenError(BlockImageError, ValueError):
    """A token id that is not known, or a token file this home did not write."""


@dataclass(frozen=True)
class TokenEntry:
    """What the home keeps of a token: never the token itself."""

    id: str
    owner: str
    created_at: str
    sha256: str


class TokenStore:
    """The per-owner API tokens of a home (``keys/api_tokens.json``)."""

    def __init__(self, keys_dir: Path, operator_token: str | None = None) -> None:
        self.path = Path(keys_dir) / "api_tokens.json"
        self._operator = operator_token

    def create(self, owner: str) -> tuple[TokenEntry, str]:
        """A new token for ``owner``: (its entry, the token, shown once)."""
        check_owner_name(owner)
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        entry = TokenEntry(
            token_id,
            owner,
            datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            _digest(secret),
        )
        with self._locked() as entries:
            entries.append(entry)
        return entry, f"bit_{token_id}_{secret}"

    def entries(self) -> list[TokenEntry]:
        return self._read()

    def revoke(self, token_id: str) -> TokenEntry:
        """Remove the token ``token_id``; raise :class:`TokenError` if there is none."""
        with self._locked() as entries:
            for i, entry in enumerate(entries):
                if entry.id == token_id:
                    return entries.pop(i)
        raise TokenError(f"no token with id {token_id!r} (see `blockimage token list`)")

    def owner_of(self, token: str) -> str | None:
        """The owner ``token`` may register as (:data:`ANY_OWNER` for the operator's token),
        or None for a token that is not valid. The comparisons take constant time."""
        if self._operator is not None and hmac.compare_digest(
            token.encode("utf-8", "replace"), self._operator.encode()
        ):
            return ANY_OWNER
        found = _TOKEN_RE.match(token)
        if found is None:
            return None
        token_id, secret = found.groups()
        digest = _digest(secret)
        owner = None
        for entry in self._read():  # reread: a revoke in another process counts at once
            if entry.id == token_id and hmac.compare_digest(entry.sha256, digest):
                owner = entry.owner
        return owner

    # -- the file -----------------------------------------------------------------------------
    def _read(self) -> list[TokenEntry]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TokenError(f"{self.path} cannot be read ({exc.strerror or exc})") from None
        try:
            doc = json.loads(raw)
            entries = [TokenEntry(**item) for item in doc["tokens"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError(f"{self.path} is not the token list this home wrote: {exc}") from None
        for entry in entries:
            if not _ID_RE.match(str(entry.id)) or not isinstance(entry.sha256, str):
                raise TokenError(f"{self.path} holds a malformed token entry")
        return entries

    @contextmanager
    def _locked(self) -> Iterator[list[TokenEntry]]:
        """The entries, to change in place; written back (atomically, 0600) when the block
        ends without an error, under a lock that other processes of this home respect."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with exclusive_lock(self.path.with_name(".api_tokens.lock")):
            entries = self._read()
            yield entries
            doc = {"tokens": [asdict(e) for e in entries]}
            write_atomic(self.path, (json.dumps(doc, indent=1) + "\n").encode(), mode=0o600)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()
