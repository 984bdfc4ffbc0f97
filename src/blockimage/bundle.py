"""Evidence bundles: one CARv1 file a third party can check offline, with no BlockImage node.

The CAR's single root is a dag-cbor *evidence block*::

    {"type": "blockimage-evidence/1",
     "image": <CID link to the registered file's UnixFS root>,
     "leaf": <the exact signed record bytes hashed as the Merkle leaf>,
     "proof": {"leaf_index": n, "tree_size": n, "inclusion_path": [bytes, ...]},
     "checkpoint": "<signed tree head (C2SP signed note)>",
     "log": {"origin": "...", "public_key": <32 bytes, Ed25519>},
     "events": [{"leaf": <event bytes>, "leaf_index": n, "inclusion_path": [bytes, ...]}, ...]}

followed by every block of the image. Because the evidence block links the image,
``ipfs dag import bundle.car`` stores and pins the whole bundle. :func:`verify_bundle` checks,
in order: every block against its CID; the record's owner signature; the inclusion proof
against the checkpoint root; the checkpoint signature by the log key; the image bytes against
the record's CID and SHA-256; that the log's origin names its key; and each event (transfer,
note) about the record: its inclusion under the same checkpoint, its signature, and that its
signer owned the record then. A bundle carries its
own log key, so a forger can sign one with a key of their own: only a key the checker pinned
(:meth:`BundleReport.signed_by`: ``verify-bundle --log-key``, or ``[trust] logs`` in
config.toml) makes the evidence trusted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import dag_cbor
from multiformats import CID

from .errors import BlockImageError
from .ledger.events import InvalidEventError, current_owner_key, parse_event_leaf
from .ledger.proofs import (
    InvalidProofError,
    check_inclusion,
    check_log_proof,
    log_origin,
    note_verifier_key,
    open_log_checkpoint,
    parse_verifier_key,
)
from .records import LogProof, Record
from .storage.car import InvalidCarError, read_car, write_car
from .storage.unixfs import DAG_CBOR, InvalidBlockError, block_cid, cid_text, file_content

__all__ = ["make_bundle", "verify_bundle", "BundleReport", "InvalidBundleError"]

_TYPE = "blockimage-evidence/1"


class InvalidBundleError(BlockImageError, ValueError):
    """The bundle is malformed, or one of its proofs fails (the message says which)."""


@dataclass(frozen=True)
class BundleReport:
    record: Record
    image_bytes: int
    tree_size: int
    root_hash: str
    log_origin: str
    log_public_key: str
    events: tuple[dict[str, Any], ...] = ()

    @property
    def log_key(self) -> str:
        """The signing log's verifier key in Go note form (what ``--log-key`` takes)."""
        return note_verifier_key(self.log_origin, bytes.fromhex(self.log_public_key))

    def signed_by(self, pinned: Iterable[str]) -> bool:
        """Whether one of the ``pinned`` log keys (note form, or 64 hex digits) signed it;
        :class:`~blockimage.ledger.proofs.InvalidProofError` for text that is not a key."""
        key = bytes.fromhex(self.log_public_key)
        return any(parse_verifier_key(k) == (self.log_origin, key) for k in pinned)


T = TypeVar("T")


def _field(doc: dict[str, Any], key: str, kind: type[T]) -> T:
    value = doc.get(key)
    if not isinstance(value, kind):
        raise InvalidBundleError(f"the evidence block's {key!r} is missing or not {kind.__name__}")
    return value


def make_bundle(
    log: LogProof,
    image_car: bytes,
    *,
    origin: str,
    log_public_key: bytes,
    events: Sequence[LogProof] = (),
) -> bytes:
    """The evidence CAR for a record: its log proof, its events' proofs (against the same
    checkpoint) and the image's blocks (from a CAR)."""
    image = read_car(image_car)
    if len(image.roots) != 1:
        raise ValueError("the image CAR must have exactly one root")
    evidence = dag_cbor.encode(
        {
            "type": _TYPE,
            "image": CID.decode(image.roots[0]),
            "leaf": log.leaf,
            "proof": {
                "leaf_index": log.leaf_index,
                "tree_size": log.tree_size,
                "inclusion_path": [bytes.fromhex(h) for h in log.inclusion_path],
            },
            "checkpoint": log.checkpoint,
            "log": {"origin": origin, "public_key": log_public_key},
            "events": [
                {
                    "leaf": e.leaf,
                    "leaf_index": e.leaf_index,
                    "inclusion_path": [bytes.fromhex(h) for h in e.inclusion_path],
                }
                for e in events
            ],
        }
    )
    root = block_cid(evidence, DAG_CBOR)
    return write_car([root], [(root, evidence), *image.blocks.items()])


def verify_bundle(data: bytes) -> BundleReport:
    """Check a bundle completely (see the module docstring); raise
    :class:`InvalidBundleError` at the first failure, whatever the bytes are: a bundle comes
    from outside, and any way in which it fails to parse is a reason to refuse it."""
    try:
        return _verify_bundle(data)
    except InvalidBundleError:
        raise
    except BlockImageError as exc:
        raise InvalidBundleError(str(exc)) from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise InvalidBundleError(f"malformed bundle ({type(exc).__name__}: {exc})") from None


def _verify_bundle(data: bytes) -> BundleReport:
    try:
        car = read_car(data)
    except (InvalidCarError, InvalidBlockError) as exc:
        raise InvalidBundleError(f"not a valid CAR: {exc}") from None
    if len(car.roots) != 1 or car.roots[0] not in car.blocks:
        raise InvalidBundleError("the bundle's root evidence block is missing")
    try:
        doc = dag_cbor.decode(car.blocks[car.roots[0]])
    except Exception as exc:  # dag_cbor raises several decoding error types
        raise InvalidBundleError(f"the evidence block is not dag-cbor ({exc})") from None
    if not isinstance(doc, dict) or doc.get("type") != _TYPE:
        raise InvalidBundleError(f"the root block is not a {_TYPE} evidence block")
    leaf = _field(doc, "leaf", bytes)
    note = _field(doc, "checkpoint", str)
    image_root = bytes(_field(doc, "image", CID))
    proof, log = _field(doc, "proof", dict), _field(doc, "log", dict)
    origin, public_key = _field(log, "origin", str), _field(log, "public_key", bytes)
    index, size = _field(proof, "leaf_index", int), _field(proof, "tree_size", int)
    path = [p for p in _field(proof, "inclusion_path", list) if isinstance(p, bytes)]
    if origin != log_origin(public_key):
        raise InvalidBundleError(
            f"the bundle names its log {origin!r}, but a log with key {public_key.hex()} is "
            f"{log_origin(public_key)!r}"
        )
    log_proof = LogProof(
        leaf_index=index,
        tree_size=size,
        root_hash=_signed_root(note, public_key, origin),
        inclusion_path=tuple(p.hex() for p in path),
        leaf=leaf,
        checkpoint=note,
    )
    try:
        record = check_log_proof(log_proof, public_key, origin=origin)
    except InvalidProofError as exc:
        raise InvalidBundleError(str(exc)) from None
    events = _checked_events(doc.get("events", []), record, log_proof, public_key, origin)
    if cid_text(image_root) != record.cid:
        raise InvalidBundleError(
            f"the bundle's image is {cid_text(image_root)}, the record names {record.cid}"
        )

    def block(cid: bytes) -> bytes:
        if cid not in car.blocks:
            raise InvalidBundleError(f"image block {cid_text(cid)} is missing from the bundle")
        return car.blocks[cid]

    try:
        content = file_content(image_root, block)
    except InvalidBlockError as exc:
        raise InvalidBundleError(f"image: {exc}") from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != record.sha256_file:
        raise InvalidBundleError(
            f"image bytes have SHA-256 {digest}, the record says {record.sha256_file}"
        )
    return BundleReport(
        record, len(content), size, log_proof.root_hash, origin, public_key.hex(), events
    )


def _checked_events(
    entries: Any, record: Record, log: LogProof, public_key: bytes, origin: str
) -> tuple[dict[str, Any], ...]:
    """The bundle's events, each included under the record's checkpoint, signed, about this
    record and signed by its owner at that point; in log order."""
    if not isinstance(entries, list):
        raise InvalidBundleError("the evidence block's 'events' is not a list")
    checked: list[dict[str, Any]] = []
    last = log.leaf_index
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidBundleError("an event entry is not a map")
        leaf, index = _field(entry, "leaf", bytes), _field(entry, "leaf_index", int)
        path = [p for p in _field(entry, "inclusion_path", list) if isinstance(p, bytes)]
        if index <= last:
            raise InvalidBundleError(f"event at leaf {index} is out of log order")
        proof = replace(
            log, leaf_index=index, leaf=leaf, inclusion_path=tuple(p.hex() for p in path)
        )
        try:
            check_inclusion(proof, public_key, origin=origin)
            event = parse_event_leaf(leaf)
        except (InvalidProofError, InvalidEventError) as exc:
            raise InvalidBundleError(f"event at leaf {index}: {exc}") from None
        if event["record_id"] != record.record_id:
            raise InvalidBundleError(f"event at leaf {index} is about another record")
        if event["signer_key"] != current_owner_key(record, checked):
            raise InvalidBundleError(f"event at leaf {index}: its signer did not own the record")
        checked.append({**event, "leaf_index": index})
        last = index
    return tuple(checked)


def _signed_root(note: str, public_key: bytes, origin: str) -> str:
    """The root (hex) that the checkpoint signs, its signature checked."""
    try:
        return open_log_checkpoint(note, public_key, origin=origin).root_hash.hex()
    except InvalidProofError as exc:
        raise InvalidBundleError(str(exc)) from None
