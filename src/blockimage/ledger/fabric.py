"""The ledger on Hyperledger Fabric: the ``blockimage`` chaincode (``chaincode/``) over the Gateway.

The chaincode validates every record before it is written (canonical JSON, required fields,
the owner's Ed25519 signature, no duplicate id or content hash, ``created_at`` equal to the
transaction's timestamp and close to the peer's clock). This class adds what the Ledger
Protocol needs on top:

* log order is commit order: ListRecords reads the key history of a key that every
  registration writes blindly, so concurrent registrations never conflict on it;
* receipts carry :class:`~blockimage.records.FabricProof`: channel, transaction id, block number,
  validation code, and the exact record bytes written, which :meth:`FabricLedger.proof` checks
  against the block fetched from the peer's ledger (qscc);
* MVCC / phantom-read conflicts are retried with a fresh proposal;
* the chaincode's refusal becomes our error type by its code (``chaincode/refusal.go``), in
  one place (:func:`refusal_error`): ``NOT_FOUND`` -> :class:`RecordNotFoundError`, ``EXISTS``
  -> :class:`DuplicateRecordError`, ``DUPLICATE_CONTENT`` -> :class:`DuplicateContentError`,
  anything else -> :class:`LedgerError`, each with the chaincode's own message.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..config import FABRIC_SETTINGS
from ..errors import BlockImageError, DuplicateContentError
from ..records import (
    FabricProof,
    InvalidRecordSignatureError,
    Receipt,
    Record,
    RecordFormatError,
    canonical_json,
    verify_record_signature,
)
from . import (
    AuditFailure,
    AuditReport,
    DuplicateRecordError,
    LedgerError,
    LedgerIntegrityError,
    RecordNotFoundError,
)
from .events import EVENT_KINDS, InvalidEventError, check_event, current_owner_key, sign_event
from .gateway import CommitError, EndorsementError, Gateway, GatewayError, find_transaction

__all__ = ["FabricLedger", "FabricSettings", "refusal_error"]

PAGE = 500
MAX_ATTEMPTS = 6

# The chaincode's refusal codes (chaincode/refusal.go) and the errors they become.
_REFUSALS: dict[str, type[BlockImageError]] = {
    "NOT_FOUND": RecordNotFoundError,
    "EXISTS": DuplicateRecordError,
    "DUPLICATE_CONTENT": DuplicateContentError,
    "INVALID": LedgerError,
    "FORBIDDEN": LedgerError,
}


def refusal_error(exc: EndorsementError, action: str) -> BlockImageError:
    """The error for a refused proposal, chosen by the chaincode's code; ``action`` says what
    was refused ("GetRecord", "the record", ...) for refusals without a more precise type."""
    code, sep, text = exc.message.partition(": ")
    kind = _REFUSALS.get(code) if sep else None
    if kind is None:  # not the contract's own refusal: the peer's, or the shim's
        return LedgerError(f"the Fabric peer refused {action}: {exc.message}")
    if kind is LedgerError:
        return LedgerError(f"the chaincode refused {action}: {text}")
    return kind(text)


class FabricSettings:
    """Where the gateway peer is and who we are on the channel."""

    def __init__(
        self,
        gateway: str,
        msp_id: str,
        cert: str | Path,
        key: str | Path,
        tls_ca: str | Path,
        channel: str = "blockimage",
        chaincode: str = "blockimage",
        tls_server_name: str | None = None,
    ) -> None:
        self.gateway, self.msp_id = gateway, msp_id
        self.cert, self.key, self.tls_ca = Path(cert), Path(key), Path(tls_ca)
        self.channel, self.chaincode, self.tls_server_name = channel, chaincode, tls_server_name

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> FabricSettings:
        """From short names (``gateway``, ``msp_id``, ...), as in config.toml's [fabric] table;
        empty values take the defaults."""
        return cls(**{k: v for k, v in values.items() if k in FABRIC_SETTINGS and v})

    @classmethod
    def from_exports(cls, env: Mapping[str, str]) -> FabricSettings:
        """From ``BLOCKIMAGE_FABRIC_*`` variables, as ``scripts/fabric-network.sh up`` prints."""
        prefix = "BLOCKIMAGE_FABRIC_"
        return cls.from_mapping(
            {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
        )

    def connect(self) -> Gateway:
        """A Gateway client with this identity, channel and chaincode."""
        return Gateway(
            self.gateway,
            msp_id=self.msp_id,
            cert=self.cert,
            key=self.key,
            tls_ca=self.tls_ca,
            channel=self.channel,
            chaincode=self.chaincode,
            tls_server_name=self.tls_server_name,
        )


def _record_key(record_id: str) -> str:
    # The chaincode's composite key for a record: \x00 + object type + \x00 + id + \x00.
    return f"\x00record\x00{record_id}\x00"


class FabricLedger:
    shared = True  # a channel: every node of the consortium writes to it

    def __init__(self, settings: FabricSettings) -> None:
        self.settings = settings
        self._gateway = settings.connect()
        self._records: dict[str, Record] = {}  # records are immutable once committed

    def close(self) -> None:
        self._gateway.close()

    # -- calls ------------------------------------------------------------------------------------
    def _evaluate(self, function: str, *args: str) -> bytes:
        try:
            return self._gateway.evaluate(function, *args)
        except EndorsementError as exc:
            raise refusal_error(exc, function) from None

    def _record(self, leaf: bytes) -> Record:
        record = Record.from_leaf(leaf)
        self._records.setdefault(record.record_id, record)
        return record

    def _records_json(self, data: bytes) -> list[Record]:
        # The chaincode returns records embedded in a JSON array (Go may escape <, >, & there):
        # re-encoding canonically (in the record's version's encoding) restores the leaf bytes.
        return [self._record(Record.encode(r)) for r in json.loads(data)]

    # -- the Ledger Protocol ----------------------------------------------------------------------
    def append(self, record: Record, *, check: Callable[[], None] | None = None) -> FabricProof:
        """Submit the record and wait for its commit. ``check`` runs before the submission;
        on a channel shared by several nodes only the chaincode's own rules are atomic."""
        record.check_form()
        verify_record_signature(record)
        if check is not None:
            check()
        leaf = record.leaf_bytes()
        when = datetime.strptime(record.created_at, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc
        )
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                committed = self._gateway.submit("RegisterRecord", leaf, when=when)
                break
            except EndorsementError as exc:
                raise refusal_error(exc, "the record") from None
            except CommitError as exc:
                if not exc.conflict or attempt == MAX_ATTEMPTS:
                    raise LedgerError(str(exc)) from None
                time.sleep(random.uniform(0.05, 0.2) * attempt)  # a concurrent write won; retry
        self._records[record.record_id] = record
        return self._transaction_proof(committed.tx_id, record.record_id, leaf)

    def _transaction_proof(self, tx_id: str, record_id: str, leaf: bytes) -> FabricProof:
        """Evidence from the peer's own ledger (qscc): the block holding ``tx_id``, which must
        mark it VALID and show it wrote exactly ``leaf`` under the record's key."""
        found = find_transaction(
            self._gateway.block_by_tx_id(tx_id), tx_id, self.settings.chaincode
        )
        written = found.writes.get(_record_key(record_id))
        if found.validation_code != "VALID" or written != leaf:
            raise AuditFailure(
                f"record {record_id}: transaction {tx_id} in block {found.block_number} is "
                f"{found.validation_code} and "
                + ("wrote these record bytes" if written == leaf else "did not write these bytes")
            )
        return FabricProof(
            channel=self.settings.channel,
            chaincode=self.settings.chaincode,
            tx_id=tx_id,
            block_number=found.block_number,
            validation_code=found.validation_code,
            leaf=leaf,
            msp_id=self.settings.msp_id,
            block_data_hash=found.block_data_hash,
        )

    def get(self, record_id: str) -> Record:
        if record_id in self._records:
            return self._records[record_id]
        return self._record(self._evaluate("GetRecord", record_id))

    def proof(self, record_id: str) -> FabricProof:
        """The transaction that wrote the record, checked against the block on the peer."""
        leaf = self._evaluate("GetRecord", record_id)
        return self._transaction_proof(self._write_tx(record_id), record_id, leaf)

    def _write_tx(self, record_id: str) -> str:
        """The id of the transaction that wrote the record."""
        history = json.loads(self._evaluate("GetHistory", record_id))
        if not history["writes"]:
            raise LedgerError(f"record {record_id} has no write in its key history")
        return str(history["writes"][0]["tx_id"])

    def _position(self, record_id: str) -> tuple[int, int]:
        """(block number, position in the block) of the transaction that wrote the record:
        the channel's own order (``created_at`` has one-second steps)."""
        return self._tx_position(self._write_tx(record_id))

    def _tx_position(self, tx_id: str) -> tuple[int, int]:
        found = find_transaction(
            self._gateway.block_by_tx_id(tx_id), tx_id, self.settings.chaincode
        )
        return found.block_number, found.position

    def receipt(self, record_id: str) -> Receipt:
        """The record as the block wrote it, its owner signature checked: on Fabric the
        endorsement policy and the ordered, validated block are the ledger's own evidence."""
        proof = self.proof(record_id)
        return Receipt(_signed(Record.from_leaf(proof.leaf), record_id), proof)

    def find_by_sha256(self, digest: str) -> list[Record]:
        return self._records_json(self._evaluate("QueryBySha256", digest))

    def by_owner(self, owner: str) -> list[Record]:
        return self._records_json(self._evaluate("QueryByOwner", owner))

    def add_event(
        self, record_id: str, kind: str, signer: Ed25519PrivateKey, **fields: str
    ) -> dict:
        """Record a signed event (:mod:`.events`): ``kind="transfer"`` with ``to`` and
        ``to_key`` (hex) moves the record to a new owner; ``kind="note"`` with ``note``
        annotates it. ``signer`` must be the record's current owner key; the chaincode checks
        it and adds the transaction's time and id. Returns the event as written."""
        event = sign_event(record_id, kind, signer, **fields)
        try:
            committed = self._gateway.submit("AddEvent", canonical_json(event))
        except EndorsementError as exc:
            raise refusal_error(exc, "the event") from None
        done = json.loads(committed.result)
        return {**event, "at": done.get("timestamp"), "tx_id": committed.tx_id}

    def _chaincode_events(self, record_id: str) -> list[dict[str, Any]]:
        """Events about the record as the chaincode keeps them (derivations too), unchecked."""
        return list(json.loads(self._evaluate("GetHistory", record_id))["events"])

    def events(self, record_id: str) -> list[dict[str, Any]]:
        """The transfers and notes about the record in the channel's order (block, position),
        each checked: its signature, and that its signer owned the record then."""
        record = self.receipt(record_id).record
        found = [e for e in self._chaincode_events(record_id) if e.get("kind") in EVENT_KINDS]
        found.sort(key=lambda e: self._tx_position(str(e.get("tx_id"))))
        checked: list[dict[str, Any]] = []
        for event in found:
            try:
                check_event(event)
                if event["signer_key"] != current_owner_key(record, checked):
                    raise InvalidEventError("its signer did not own the record then")
            except InvalidEventError as exc:
                raise LedgerIntegrityError(
                    f"ledger integrity failure: event {event.get('tx_id')} on record "
                    f"{record_id}: {exc}"
                ) from None
            checked.append(event)
        return checked

    def history(self, record_id: str) -> list[Record]:
        family = [self.get(record_id)]
        queue = [record_id]
        while queue:
            for event in self._chaincode_events(queue.pop(0)):
                if event.get("kind") == "derivation":
                    family.append(self.get(event["child"]))
                    queue.append(event["child"])
        # Log order: the position of each writing transaction on the channel (a block fetch
        # per derivative; a record without derivatives needs none).
        ordered = [family[0]] + sorted(family[1:], key=lambda r: self._position(r.record_id))
        return [_signed(r, r.record_id) for r in ordered]

    def records(self, start: int = 0) -> Iterator[tuple[int, Record]]:
        while True:
            page = json.loads(self._evaluate("ListRecords", str(start), str(PAGE)))
            for entry in page["entries"]:
                yield entry["index"], self._record(Record.encode(entry["record"]))
            start += len(page["entries"])
            if not page["entries"] or start >= page["size"]:
                return

    def size(self) -> int:
        return int(json.loads(self._evaluate("ListRecords", "0", "0"))["size"])

    def audit(
        self, start: int = 0, progress: Callable[[int, int], None] | None = None
    ) -> AuditReport:
        """Re-check every record from entry ``start``: its form and signature, uniqueness
        (among the records checked), and that the transaction that wrote it is VALID in its
        block and wrote exactly these bytes."""
        ids: set[str] = set()
        content: dict[str, str] = {}
        count = 0
        total = self.size()
        for index, record in self.records(start):
            try:
                record.check_form()
                verify_record_signature(record)
            except (RecordFormatError, InvalidRecordSignatureError) as exc:
                raise AuditFailure(f"entry {index} (record {record.record_id}): {exc}") from None
            if record.record_id in ids:
                raise AuditFailure(f"entry {index}: record {record.record_id} appears twice")
            ids.add(record.record_id)
            for digest in {record.sha256_file, record.sha256_pixels}:
                if content.setdefault(digest, record.record_id) != record.record_id:
                    raise AuditFailure(
                        f"entry {index} (record {record.record_id}): content {digest} is also "
                        f"record {content[digest]}"
                    )
            try:
                self.proof(record.record_id)
            except GatewayError as exc:
                raise AuditFailure(f"entry {index} (record {record.record_id}): {exc}") from None
            count += 1
            if progress is not None and (index + 1) % 1_000 == 0:
                progress(index + 1, total)
        height, head = self._gateway.chain_info()
        return AuditReport(
            tree_size=count, root_hash=head, checkpoints_checked=0, records_checked=count
        )


def _signed(record: Record, record_id: str) -> Record:
    """``record`` once its owner signature verifies and it is the record asked for."""
    try:
        verify_record_signature(record)
    except InvalidRecordSignatureError as exc:
        raise LedgerIntegrityError(f"ledger integrity failure: record {record_id}: {exc}") from None
    if record.record_id != record_id:
        raise LedgerIntegrityError(
            f"ledger integrity failure: asked for record {record_id}, the channel returned "
            f"{record.record_id}"
        )
    return record
