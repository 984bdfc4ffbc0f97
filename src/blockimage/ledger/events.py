"""Provenance events about a registered record: transfers of ownership and notes.

One format on both ledgers (the chaincode's, ``chaincode/contract.go`` ``AddEvent``)::

    {"record_id": "...", "kind": "transfer", "to": "NAME", "to_key": "HEX",
     "signer_key": "HEX", "signature": "HEX"}
    {"record_id": "...", "kind": "note", "note": "TEXT", "signer_key": "HEX", "signature": "HEX"}

plus a random ``nonce`` (hex) that BlockImage adds, so that the same transfer or note made twice
is two events, while a replay of one signed event is refused (the Merkle log keeps signatures
unique).

The signer is the record's *current* owner: its ``owner_key``, or the ``to_key`` of the latest
transfer before the event. The Ed25519 signature is over the canonical JSON of the event without
``signature`` (string values only, so RFC 8785 and the chaincode's encoding agree byte for
byte) and without what the ledger adds: ``at`` (the time it was written) on both ledgers,
``tx_id`` on Fabric, ``leaf_index`` on the Merkle log. Pure functions.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..records import RECORD_ID_RE, Record, jcs
from . import LedgerError

__all__ = [
    "EVENT_KINDS",
    "InvalidEventError",
    "LEDGER_FIELDS",
    "check_event",
    "parse_event_leaf",
    "current_owner_key",
    "sign_event",
]

EVENT_KINDS = ("transfer", "note")
LEDGER_FIELDS = ("at", "tx_id", "leaf_index")  # added by the ledger, not signed by the owner
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX128 = re.compile(r"^[0-9a-f]{128}$")
_MAX_NOTE = 4096


class InvalidEventError(LedgerError, ValueError):
    """An event is malformed, or its signature does not verify."""


def signing_bytes(event: dict[str, Any]) -> bytes:
    """The bytes the signer signs: the event without its signature and the ledger's fields."""
    return jcs({k: v for k, v in event.items() if k != "signature" and k not in LEDGER_FIELDS})


def sign_event(record_id: str, kind: str, signer: Ed25519PrivateKey, **fields: str) -> dict:
    """A signed event (see the module docstring); checked before it is returned."""
    event: dict[str, Any] = {
        "record_id": record_id,
        "kind": kind,
        "signer_key": signer.public_key().public_bytes_raw().hex(),
        "nonce": secrets.token_hex(16),  # the same transfer or note twice is two events
        **fields,
    }
    event["signature"] = signer.sign(signing_bytes(event)).hex()
    check_event(event)
    return event


def check_event(event: Any) -> None:
    """Raise :class:`InvalidEventError` unless ``event`` has its kind's fields and a valid
    signature by ``signer_key`` (whether the signer may sign it is :func:`current_owner_key`'s
    question)."""
    if not isinstance(event, dict):
        raise InvalidEventError("an event must be a JSON object")
    kind = event.get("kind")
    if kind not in EVENT_KINDS:
        raise InvalidEventError(f"event kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")
    needed = {"transfer": ("to", "to_key"), "note": ("note",)}[kind]
    allowed = {"record_id", "kind", "signer_key", "signature", "nonce", *needed, *LEDGER_FIELDS}
    if set(event) - allowed:
        raise InvalidEventError(
            f"a {kind} event has unexpected fields {sorted(set(event) - allowed)}"
        )
    for name in ("record_id", "signer_key", "signature", *needed):
        if not isinstance(event.get(name), str) or not event[name]:
            raise InvalidEventError(f"a {kind} event needs a non-empty string {name!r}")
    if not RECORD_ID_RE.match(event["record_id"]):
        raise InvalidEventError(f"{event['record_id']!r} is not a record id")
    for name in ("signer_key", *(("to_key",) if kind == "transfer" else ())):
        if not _HEX64.match(event[name]):
            raise InvalidEventError(f"{name} must be 64 lower-case hex digits")
    if kind == "note" and len(event["note"]) > _MAX_NOTE:
        raise InvalidEventError(f"a note may have at most {_MAX_NOTE} characters")
    if not _HEX128.match(event["signature"]):
        raise InvalidEventError("the event's signature must be 128 lower-case hex digits")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(event["signer_key"])).verify(
            bytes.fromhex(event["signature"]), signing_bytes(event)
        )
    except (InvalidSignature, ValueError):
        raise InvalidEventError(
            f"the {kind} event on record {event['record_id']}: signature does not verify"
        ) from None


def current_owner_key(record: Record, earlier: Iterable[dict[str, Any]]) -> str:
    """The key (hex) that owns ``record`` after the ``earlier`` events, in log order."""
    owner = record.owner_key
    for event in earlier:
        if event.get("kind") == "transfer":
            owner = str(event["to_key"])
    return owner


def parse_event_leaf(leaf: bytes) -> dict[str, Any]:
    """The event in an event leaf, its form and signature checked; :class:`InvalidEventError`
    otherwise."""
    try:
        event = json.loads(leaf.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(f"the leaf is not a JSON event: {exc}") from None
    check_event(event)
    if not isinstance(event.get("at"), str):
        raise InvalidEventError("the event has no time (at)")
    if jcs(event) != leaf:
        raise InvalidEventError("the leaf is not the event's canonical encoding")
    return dict(event)
