"""The data model: records, receipts and verdicts, their canonical JSON, and Ed25519 signatures.

A :class:`Record` is what the ledger stores. Records of format ``version`` 2 (every record
made now) are encoded as RFC 8785 JSON (the JSON Canonicalization Scheme: sorted keys, no
insignificant whitespace, UTF-8, numbers as ECMAScript writes them), which any JCS
implementation reproduces (:func:`jcs`; the ``rfc8785`` package checks it in the tests).
Records without a ``version`` field (version 1, made before) keep the encoding they were signed
in: Python's ``json.dumps`` with sorted keys and no whitespace (:func:`canonical_json`), which
writes ``1.0`` where JCS writes ``1``. The owner signs the canonical encoding of the record
*without* its ``signature`` field (Ed25519, RFC 8032); the ledger leaf is the canonical
encoding of the record *with* the signature, so a third party who holds the leaf bytes can
check both the signature and the Merkle inclusion proof. The chaincode keeps numbers as written
and re-encodes with the same rules, so it accepts and verifies both versions.

Every user-visible document (CLI ``--json``, HTTP API, reports) is produced from these types.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import BlockImageError

__all__ = [
    "RECORD_ID_RE",
    "Tag",
    "WatermarkMetrics",
    "Record",
    "LogProof",
    "FabricProof",
    "proof_from_dict",
    "Receipt",
    "Similarity",
    "Region",
    "BlindEvidence",
    "Verdict",
    "VERDICTS",
    "VerdictKind",
    "MatchedBy",
    "AlignedBy",
    "canonical_json",
    "jcs",
    "RECORD_VERSION",
    "sign_record",
    "verify_record_signature",
    "InvalidRecordSignatureError",
    "RecordFormatError",
    "new_record_id",
]

RECORD_ID_RE = re.compile(r"^[0-9a-f]{16}$")
RECORD_VERSION = 2  # the record format new records are made in: RFC 8785 encoding
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
# authentic = the same pixels as registered; benign = the registered image after re-encoding,
# resizing or global colour changes; tampered = local content changed; unknown = no match.
VerdictKind = Literal["authentic", "benign", "tampered", "unknown"]
VERDICTS: tuple[VerdictKind, ...] = get_args(VerdictKind)
# Which evidence found the record: the name of the matcher (blockimage.matchers) that proposed it.
MatchedBy = Literal[
    "sha256_file", "original_sha256_file", "sha256_pixels", "watermark", "pdq", "keypoints"
]
# How the suspect was put on the original's frame before the pixel comparison: resized; resized
# and then rotated or shifted slightly (ECC); by local features (crops); not at all.
AlignedBy = Literal["resize", "refined", "features", "none"]


class RecordFormatError(BlockImageError, ValueError):
    """A record document is missing fields or has values of the wrong form."""


class InvalidRecordSignatureError(BlockImageError, ValueError):
    """The owner's Ed25519 signature does not verify over the record's canonical bytes."""


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as this project's canonical JSON (sorted keys, no whitespace, UTF-8;
    not RFC 8785, see the module docstring).

    Floats must be finite; NaN and infinities have no JSON form and are refused.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


class _NotPlain(BlockImageError):
    """A value :func:`jcs` hands to the reference implementation (never leaves this module)."""


def jcs(value: Any) -> bytes:
    """``value`` as RFC 8785 (JCS) bytes.

    Equal to ``rfc8785.dumps`` (a property test checks it on random documents). Python's JSON
    encoder already writes what JCS writes for strings, ASCII keys in sorted order, integers and
    floats in [1e-4, 1e16); integral floats below 2**53 are written as integers, as ECMAScript
    does. That
    covers every record and takes a fifth of the reference's time (an audit re-encodes a million
    records); anything else (non-ASCII keys, tiny or huge floats) goes to the ``rfc8785`` package.
    """
    try:
        plain = _plain(value)
    except _NotPlain:
        import rfc8785

        try:
            return bytes(rfc8785.dumps(value))
        except rfc8785.CanonicalizationError as exc:
            raise ValueError(f"no RFC 8785 form: {exc}") from None
    return json.dumps(
        plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        if not all(isinstance(k, str) and k.isascii() for k in value):
            raise _NotPlain
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("NaN and infinities have no JSON form")
        if abs(value) < 2**53 and value == int(value):
            return int(value)  # 1.0 -> 1, -0.0 -> 0 (beyond 2**53 ECMAScript rounds digits)
        if 1e-4 <= abs(value) < 2**53:  # Python's repr is plain decimal here, as ECMAScript's
            return value
        raise _NotPlain
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        raise _NotPlain  # beyond I-JSON's exact integers: the reference refuses it
    return value


def new_record_id() -> str:
    """A fresh random 64-bit record id as 16 lower-case hex digits (the watermark payload)."""
    import secrets

    return secrets.token_bytes(8).hex()


@dataclass(frozen=True)
class Tag:
    """A content label from the image classifier, with its score in [0, 1]."""

    label: str
    score: float


@dataclass(frozen=True)
class WatermarkMetrics:
    """Imperceptibility and payload fidelity of the embedded watermark.

    ``psnr`` is over every pixel and channel of the registered file; ``ssim`` is of the luma
    with the long side scaled to ``ssim_side`` pixels (the working resolution, 768; older
    records say 1024; None: at full size, as records made before the field measured it);
    ``nc`` compares the coded bits embedded and read back.
    """

    psnr: float
    ssim: float
    nc: float
    ssim_side: int | None = None


@dataclass(frozen=True)
class Record:
    """One registration on the ledger, signed by its owner.

    ``parent`` names the record this one derives from (a derivative registration), else None.
    ``signature`` is empty until :func:`sign_record` fills it.
    """

    record_id: str
    owner: str
    owner_key: str
    created_at: str
    sha256_file: str
    sha256_pixels: str
    original_sha256_file: str
    pdq: str
    pdq_quality: int
    cid: str
    width: int
    height: int
    media_type: str
    tags: tuple[Tag, ...] = ()
    watermark: WatermarkMetrics | None = None
    parent: str | None = None
    signature: str = ""
    version: int = RECORD_VERSION  # 1: made before RFC 8785 (no "version" field in its JSON)

    # -- encoding -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # What dataclasses.asdict gives, built directly: asdict deep-copies every value and
        # took ~100 us per record, a third of a bulk append.
        d = {name: getattr(self, name) for name in _RECORD_FIELDS}
        d["tags"] = [{"label": t.label, "score": t.score} for t in self.tags]
        wm = self.watermark
        if wm is None:
            d["watermark"] = None
        else:
            d["watermark"] = {"psnr": wm.psnr, "ssim": wm.ssim, "nc": wm.nc}
            if wm.ssim_side is not None:  # absent in older records, whose bytes are signed
                d["watermark"]["ssim_side"] = wm.ssim_side
        if self.version == 1:
            del d["version"]  # version 1 records have no such field in their signed bytes
        return d

    @staticmethod
    def encode(d: dict[str, Any]) -> bytes:
        """The canonical bytes of a record document in its version's encoding."""
        return canonical_json(d) if d.get("version", 1) == 1 else jcs(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        if not isinstance(d, dict):
            raise RecordFormatError(f"a record must be an object, not {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        missing = names - set(d) - {"tags", "watermark", "parent", "signature", "version"}
        if missing:
            raise RecordFormatError(f"record is missing fields: {', '.join(sorted(missing))}")
        try:
            kwargs = {k: d[k] for k in names if k in d}
            kwargs["version"] = d.get("version", 1)
            kwargs["tags"] = tuple(
                Tag(str(t["label"]), float(t["score"])) for t in d.get("tags", [])
            )
            wm = d.get("watermark")
            kwargs["watermark"] = (
                WatermarkMetrics(
                    float(wm["psnr"]),
                    float(wm["ssim"]),
                    float(wm["nc"]),
                    None if wm.get("ssim_side") is None else int(wm["ssim_side"]),
                )
                if wm is not None
                else None
            )
            record = cls(**kwargs)
        except (TypeError, KeyError, ValueError, AttributeError, OverflowError) as exc:
            raise RecordFormatError(f"record has a malformed field: {exc!r}") from None
        record.check_form()
        return record

    def check_form(self) -> None:
        """Raise :class:`RecordFormatError` if a field does not have its required form."""
        for name in _TEXT_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise RecordFormatError(f"field {name} of a record must be a string")
        for name, low in (("pdq_quality", 0), ("width", 1), ("height", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise RecordFormatError(f"field {name} of a record must be an integer >= {low}")
        if self.version not in (1, 2) or isinstance(self.version, bool):
            raise RecordFormatError(f"record format version {self.version!r} is not 1 or 2")
        if self.pdq_quality > 100:
            raise RecordFormatError("field pdq_quality of a record must be at most 100")
        if self.parent is not None and not isinstance(self.parent, str):
            raise RecordFormatError("field parent of a record must be a record id or null")
        if not RECORD_ID_RE.match(self.record_id):
            raise RecordFormatError(f"record_id {self.record_id!r} is not 16 lower-case hex digits")
        for name in ("sha256_file", "sha256_pixels", "original_sha256_file", "pdq", "owner_key"):
            if not _HEX64_RE.match(getattr(self, name)):
                raise RecordFormatError(f"{name} of record {self.record_id} is not 64 hex digits")
        if self.parent is not None and not RECORD_ID_RE.match(self.parent):
            raise RecordFormatError(f"parent {self.parent!r} is not a record id")

    def signing_bytes(self) -> bytes:
        """The canonical bytes the owner signs: the record without its signature."""
        d = self.to_dict()
        del d["signature"]
        return self.encode(d)

    def leaf_bytes(self) -> bytes:
        """The canonical bytes of the signed record: the ledger leaf."""
        return self.encode(self.to_dict())

    @classmethod
    def from_leaf(cls, leaf: bytes) -> Record:
        try:
            return cls.from_dict(json.loads(leaf.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordFormatError(f"leaf is not a JSON record: {exc}") from exc


_RECORD_FIELDS = tuple(f.name for f in fields(Record))
_TEXT_FIELDS = (
    "record_id", "owner", "owner_key", "created_at", "sha256_file", "sha256_pixels",
    "original_sha256_file", "pdq", "cid", "media_type", "signature",
)  # fmt: skip


def sign_record(record: Record, key: Ed25519PrivateKey) -> Record:
    """Return ``record`` signed with ``key``; the key must be the record's ``owner_key``."""
    public_hex = key.public_key().public_bytes_raw().hex()
    if public_hex != record.owner_key:
        raise ValueError("the signing key is not the record's owner_key")
    unsigned = replace(record, signature="")
    return replace(unsigned, signature=key.sign(unsigned.signing_bytes()).hex())


def verify_record_signature(record: Record) -> None:
    """Check the owner's signature; raise :class:`InvalidRecordSignatureError` if it fails."""
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(record.owner_key))
        public.verify(bytes.fromhex(record.signature), record.signing_bytes())
    except (InvalidSignature, ValueError) as exc:
        raise InvalidRecordSignatureError(
            f"record {record.record_id}: owner signature does not verify against owner_key "
            f"{record.owner_key[:16]}…"
        ) from exc


@dataclass(frozen=True)
class LogProof:
    """Where a record sits in the log, and the RFC 9162 inclusion proof against a checkpoint."""

    leaf_index: int
    tree_size: int
    root_hash: str
    inclusion_path: tuple[str, ...]
    leaf: bytes
    checkpoint: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "inclusion_path": list(self.inclusion_path),
            "leaf": base64.b64encode(self.leaf).decode("ascii"),
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogProof:
        with _malformed("the receipt's log proof"):
            return cls(
                leaf_index=int(d["leaf_index"]),
                tree_size=int(d["tree_size"]),
                root_hash=str(d["root_hash"]),
                inclusion_path=tuple(str(h) for h in d["inclusion_path"]),
                leaf=base64.b64decode(d["leaf"], validate=True),
                checkpoint=str(d["checkpoint"]),
            )

    def summary(self) -> str:
        return f"leaf {self.leaf_index} of {self.tree_size}, root {self.root_hash}"


@dataclass(frozen=True)
class FabricProof:
    """Where a record sits on a Hyperledger Fabric channel: the transaction that wrote it.

    Anyone with read access to the channel can check it with the peer CLI or any Fabric SDK:
    fetch block ``block_number`` (e.g. qscc ``GetBlockByTxID``), find transaction ``tx_id`` in it,
    check that the block's validation flags mark it VALID and that it wrote exactly ``leaf``
    under the record's key in namespace ``chaincode``; then check the owner's Ed25519 signature
    inside ``leaf`` (:func:`verify_record_signature`). ``block_data_hash`` is the block header's
    data hash, to compare with a block fetched from another peer.
    """

    channel: str
    chaincode: str
    tx_id: str
    block_number: int
    validation_code: str
    leaf: bytes
    msp_id: str
    block_data_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": "fabric",
            "channel": self.channel,
            "chaincode": self.chaincode,
            "tx_id": self.tx_id,
            "block_number": self.block_number,
            "validation_code": self.validation_code,
            "leaf": base64.b64encode(self.leaf).decode("ascii"),
            "msp_id": self.msp_id,
            "block_data_hash": self.block_data_hash,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FabricProof:
        with _malformed("the receipt's Fabric proof"):
            return cls(
                channel=str(d["channel"]),
                chaincode=str(d["chaincode"]),
                tx_id=str(d["tx_id"]),
                block_number=int(d["block_number"]),
                validation_code=str(d["validation_code"]),
                leaf=base64.b64decode(d["leaf"], validate=True),
                msp_id=str(d["msp_id"]),
                block_data_hash=str(d["block_data_hash"]),
            )

    def summary(self) -> str:
        return (
            f"Fabric channel {self.channel}, block {self.block_number}, "
            f"transaction {self.tx_id} ({self.validation_code})"
        )


def proof_from_dict(d: dict[str, Any]) -> LogProof | FabricProof:
    """The ``log`` object of a receipt: a Merkle log proof, or Fabric transaction evidence."""
    if not isinstance(d, dict):
        raise RecordFormatError("the receipt's log must be an object")
    return FabricProof.from_dict(d) if d.get("ledger") == "fabric" else LogProof.from_dict(d)


@contextmanager
def _malformed(what: str) -> Iterator[None]:
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, binascii.Error) as exc:
        raise RecordFormatError(f"{what} is malformed: {exc!r}") from None


@dataclass(frozen=True)
class Receipt:
    """What ``register`` returns: the signed record, its ledger proof and the file written.

    ``log`` is a :class:`LogProof` on the embedded Merkle log, a :class:`FabricProof` on Fabric.
    """

    record: Record
    log: LogProof | FabricProof
    output: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.record.to_dict()
        d["log"] = self.log.to_dict()
        if self.output is not None:
            d["output"] = self.output
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Receipt:
        if not isinstance(d, dict) or "log" not in d:
            raise RecordFormatError("a receipt must be an object with a log")
        output = d.get("output")
        if output is not None and not isinstance(output, str):
            raise RecordFormatError("the receipt's output must be a path or null")
        rest = {k: v for k, v in d.items() if k not in ("log", "output")}
        return cls(Record.from_dict(rest), proof_from_dict(d["log"]), output)


@dataclass(frozen=True)
class Similarity:
    """How close a suspect image is to the registered one (fields are None when not measured)."""

    psnr: float | None = None
    ssim: float | None = None
    nc: float | None = None
    pdq_distance: int | None = None
    watermark_bits_ok: float | None = None


@dataclass(frozen=True)
class Region:
    """A changed area, in the suspect image's pixel coordinates, with a score in [0, 1]."""

    x: int
    y: int
    w: int
    h: int
    score: float


@dataclass(frozen=True)
class BlindEvidence:
    """What the blind forensics say of an image judged alone (no registered original).

    ``score``: the blind tamper score, 0 = untouched, 1 = edited; ``false_positive_rate`` and
    ``true_positive_rate``: the shares of untouched and of edited images that scored at least
    ``threshold`` (the highest one the score reaches) in the detector's cross-validation;
    ``findings``: one sentence per piece of evidence; ``heat_map``: PNG (grey, 0-255) at the
    working resolution of where the compression history points, or None when it points nowhere.
    """

    score: float
    threshold: float
    false_positive_rate: float
    true_positive_rate: float
    findings: tuple[str, ...] = ()
    heat_map: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "threshold": self.threshold,
            "false_positive_rate": self.false_positive_rate,
            "true_positive_rate": self.true_positive_rate,
            "findings": list(self.findings),
            "heat_map": base64.b64encode(self.heat_map).decode("ascii") if self.heat_map else None,
        }


@dataclass(frozen=True)
class Verdict:
    """The answer of ``verify``: what the image is, what it matched, and the evidence."""

    verdict: VerdictKind
    matched_by: MatchedBy | None = None
    record_id: str | None = None
    record: Receipt | None = None
    similarity: Similarity = field(default_factory=Similarity)
    regions: tuple[Region, ...] = ()
    blind_tamper_score: float | None = None
    history: tuple[Record, ...] = ()
    explanation: tuple[str, ...] = ()
    mask: bytes | None = None  # PNG of the changed pixels (white), suspect size; when tampered
    # Transfers and notes about the found record, in log order (blockimage.ledger.events).
    events: tuple[dict[str, Any], ...] = ()
    # The Content Credentials (C2PA) in the suspect's file, as read and validated
    # (blockimage.credentials.read); None when the file carries none. Evidence, not the verdict.
    content_credentials: dict[str, Any] | None = None
    # The blind forensics behind blind_tamper_score (unknown verdicts); never the verdict itself.
    blind_evidence: BlindEvidence | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "matched_by": self.matched_by,
            "record_id": self.record_id,
            "record": self.record.to_dict() if self.record else None,
            "similarity": asdict(self.similarity),
            "regions": [asdict(r) for r in self.regions],
            "blind_tamper_score": self.blind_tamper_score,
            "history": [r.to_dict() for r in self.history],
            "explanation": list(self.explanation),
            "mask": base64.b64encode(self.mask).decode("ascii") if self.mask else None,
            "events": [dict(e) for e in self.events],
            "content_credentials": self.content_credentials,
            "blind_evidence": self.blind_evidence.to_dict() if self.blind_evidence else None,
        }
