"""The embedded ledger: an append-only RFC 9162 Merkle log of signed records, in SQLite.

Tables (ledger.db):
- ``leaves``: one row per record, in log order — the exact leaf bytes (the record's canonical
  signed JSON) plus lookup columns copied from it (record id, hashes, owner, parent, CID).
- ``nodes``: the hash of every *perfect* subtree (level, index); level 0 holds leaf hashes.
  Any MTH(D[a:b]) the RFC needs decomposes into O(log n) of these.
- ``checkpoints``: the signed tree head (C2SP signed note) issued after every append.
- ``events``: transfers and notes (:mod:`.events`), leaves of the same tree, sharing the leaf
  index sequence with ``leaves``: a leaf is a record or an event, never both.

Beside it, ``ledger.head`` keeps the largest checkpoint the node has signed. A log found smaller
than that (newest leaves deleted with their nodes and checkpoints), or whose first leaves no
longer hash to its root, is refused on open: the node does not run on a rolled-back log.

An append runs in one ``BEGIN IMMEDIATE`` transaction (leaf, new nodes, checkpoint), so
concurrent writers serialise and a crash leaves the whole record or none. ``synchronous=FULL``
in WAL mode makes a committed append durable.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import DuplicateContentError
from ..files import exclusive_lock, write_atomic
from ..records import (
    InvalidRecordSignatureError,
    LogProof,
    Receipt,
    Record,
    RecordFormatError,
    jcs,
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
from .checkpoint import Checkpoint, InvalidCheckpointError, open_checkpoint, sign_checkpoint
from .events import (
    InvalidEventError,
    check_event,
    current_owner_key,
    parse_event_leaf,
    sign_event,
)
from .merkle import (
    EMPTY_ROOT,
    RootAccumulator,
    consistency_path,
    inclusion_path,
    largest_power_of_two_below,
    leaf_hash,
    node_hash,
)
from .proofs import (
    InvalidProofError,
    check_consistency,
    check_inclusion,
    check_log_proof,
    open_log_checkpoint,
)

__all__ = ["MerkleLog"]

_SCHEMA_VERSION = 2  # 2: the events table (transfers, notes)
_AUDIT_BATCH = 512  # leaves whose signatures are checked together
_VERIFY_THREADS = min(4, os.cpu_count() or 1)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS leaves (
    leaf_index INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL,
    record_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    sha256_file TEXT NOT NULL,
    sha256_pixels TEXT NOT NULL,
    original_sha256_file TEXT NOT NULL,
    parent TEXT,
    cid TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS leaves_sha256_file ON leaves(sha256_file);
CREATE INDEX IF NOT EXISTS leaves_sha256_pixels ON leaves(sha256_pixels);
CREATE INDEX IF NOT EXISTS leaves_original ON leaves(original_sha256_file);
CREATE INDEX IF NOT EXISTS leaves_owner ON leaves(owner);
CREATE INDEX IF NOT EXISTS leaves_parent ON leaves(parent);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    tree_size INTEGER PRIMARY KEY,
    root_hash BLOB NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    leaf_index INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL,
    record_id TEXT NOT NULL,
    signature TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS events_record ON events(record_id);
"""
_LOOKUP_COLUMNS = (
    "record_id",
    "owner",
    "sha256_file",
    "sha256_pixels",
    "original_sha256_file",
    "parent",
    "cid",
)


class MerkleLog:
    """A :class:`~blockimage.ledger.Ledger` backed by SQLite.

    Parameters
    ----------
    path : Path
        The SQLite database file (created if missing).
    node_key : Ed25519PrivateKey
        Signs checkpoints.
    origin : str
        The log's name in its checkpoints (also the signer name).
    """

    shared = False  # the log lives in one home

    def __init__(self, path: Path, node_key: Ed25519PrivateKey, *, origin: str) -> None:
        self.path = Path(path)
        self._key = node_key
        self._public = node_key.public_key().public_bytes_raw()
        self.origin = origin
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version:
                self._db.execute("SELECT COUNT(*) FROM checkpoints LIMIT 1").fetchone()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise LedgerError(
                f"{self.path} is not a readable BlockImage ledger ({exc}); nothing was changed: "
                "restore it from a backup (see README: Backing up a home)"
            ) from None
        if version > _SCHEMA_VERSION:
            raise LedgerError(
                f"{self.path} has schema version {version}; this BlockImage knows {_SCHEMA_VERSION}"
            )
        if version < _SCHEMA_VERSION:
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        self._check_signer()
        self.head_path = self.path.with_suffix(".head")
        self._head_lock = self.path.with_suffix(".lock")
        try:
            self._check_head()
        except BaseException:
            self._db.close()
            raise

    def _check_signer(self) -> None:
        """The node key must be the one that signed this log's checkpoints: a replaced key
        would sign checkpoints that no earlier receipt's verifier accepts."""
        row = self._db.execute(
            "SELECT note FROM checkpoints ORDER BY tree_size DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return
        try:
            open_checkpoint(row[0], self._public, name=self.origin)
        except InvalidCheckpointError:
            self._db.close()
            raise LedgerError(
                f"{self.path} was signed by another node key than keys/node.key (the key was "
                "lost or replaced): restore the keys/ folder from your backup (README: Backing "
                "up a home)"
            ) from None

    def close(self) -> None:
        self._db.close()

    # -- transactions -----------------------------------------------------------------------------
    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            if exc_type is None:
                self.db.execute("COMMIT")
            else:
                self.db.execute("ROLLBACK")

    def _transaction(self) -> MerkleLog._Tx:
        return MerkleLog._Tx(self._db)

    # -- Ledger -----------------------------------------------------------------------------------
    def size(self) -> int:
        row = self._db.execute(
            "SELECT MAX(m) FROM (SELECT MAX(leaf_index) AS m FROM leaves "
            "UNION ALL SELECT MAX(leaf_index) FROM events)"
        ).fetchone()
        return 0 if row[0] is None else row[0] + 1

    def append(self, record: Record, *, check: Callable[[], None] | None = None) -> LogProof:
        with exclusive_lock(self._head_lock):
            with self._transaction() as db:
                if check is not None:
                    check()  # under the write lock: no other process can append meanwhile
                index, leaf = self._add_leaf(db, record)
                size, root, note = self._sign_checkpoint(db, index + 1)
                proof = self._proof_at(index, leaf, size, root, note)
            self._remember(size, note)
            return proof

    def append_many(self, records: Iterable[Record]) -> int:
        """Append records in one transaction with one checkpoint at the end (bulk imports);
        all or none are appended. Returns the new tree size."""
        with exclusive_lock(self._head_lock):
            with self._transaction() as db:
                size = self.size()
                note = None
                for record in records:
                    index, _ = self._add_leaf(db, record)
                    size = index + 1
                if size:
                    _, _, note = self._sign_checkpoint(db, size)
            if note is not None:
                self._remember(size, note)
            return size

    def _add_leaf(self, db: sqlite3.Connection, record: Record) -> tuple[int, bytes]:
        """Check and insert one leaf and the perfect subtrees it completes (inside a
        transaction); return its index and bytes."""
        record.check_form()
        verify_record_signature(record)
        leaf = record.leaf_bytes()
        if db.execute("SELECT 1 FROM leaves WHERE record_id=?", (record.record_id,)).fetchone():
            raise DuplicateRecordError(f"record {record.record_id} is already on the ledger")
        self._refuse_registered_content(db, record)
        index = self.size()
        db.execute(
            "INSERT INTO leaves (leaf_index, leaf, record_id, owner, sha256_file, "
            "sha256_pixels, original_sha256_file, parent, cid) VALUES (?,?,?,?,?,?,?,?,?)",
            (index, leaf, *(getattr(record, c) for c in _LOOKUP_COLUMNS)),
        )
        self._add_nodes(db, index, leaf)
        return index, leaf

    def _add_nodes(self, db: sqlite3.Connection, index: int, leaf: bytes) -> None:
        """Insert leaf ``index``'s hash and the perfect subtrees it completes."""
        digest = leaf_hash(leaf)
        db.execute("INSERT INTO nodes VALUES (0, ?, ?)", (index, digest))
        # Close every perfect subtree that this leaf completes.
        level, idx, h = 0, index, digest
        while idx & 1:
            left = self._node(level, idx - 1)
            h = node_hash(left, h)
            level, idx = level + 1, idx >> 1
            db.execute("INSERT INTO nodes VALUES (?, ?, ?)", (level, idx, h))

    # -- events (transfers, notes) ------------------------------------------------------------
    def add_event(
        self, record_id: str, kind: str, signer: Ed25519PrivateKey, **fields: str
    ) -> dict[str, Any]:
        """Append a signed event about a record (see :mod:`.events`): ``kind="transfer"`` with
        ``to`` and ``to_key`` moves it to a new owner, ``kind="note"`` with ``note``
        annotates it. ``signer`` must hold the record's current owner key. Returns the event
        as written, with ``at`` and ``leaf_index``."""
        return self._append_signed_event(sign_event(record_id, kind, signer, **fields))

    def _append_signed_event(self, event: dict[str, Any]) -> dict[str, Any]:
        check_event(event)
        record_id, kind = event["record_id"], event["kind"]
        with exclusive_lock(self._head_lock):
            with self._transaction() as db:
                record = self.get(record_id)
                owner = current_owner_key(record, self._event_rows(record_id))
                if event["signer_key"] != owner:
                    raise LedgerError(
                        f"the {kind} event on record {record_id} is not signed by its current "
                        f"owner (key {owner[:16]}…)"
                    )
                at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                leaf = jcs({**event, "at": at})
                index = self.size()
                try:
                    db.execute(
                        "INSERT INTO events VALUES (?, ?, ?, ?)",
                        (index, leaf, record_id, event["signature"]),
                    )
                except sqlite3.IntegrityError:
                    raise LedgerError(
                        f"this signed {kind} event is already on the ledger (a replay)"
                    ) from None
                self._add_nodes(db, index, leaf)
                size, _, note = self._sign_checkpoint(db, index + 1)
            self._remember(size, note)
        return {**event, "at": at, "leaf_index": index}

    def _event_rows(self, record_id: str, before: int | None = None) -> list[dict[str, Any]]:
        """The events about ``record_id`` as stored (unchecked), in log order."""
        rows = self._db.execute(
            "SELECT leaf_index, leaf FROM events WHERE record_id=? AND leaf_index<? "
            "ORDER BY leaf_index",
            (record_id, before if before is not None else 2**62),
        ).fetchall()
        return [{**json.loads(_blob(leaf)), "leaf_index": index} for index, leaf in rows]

    def evidence(self, record_id: str) -> tuple[Receipt, list[LogProof]]:
        """The checked receipt of a record and the proofs of its events' leaves, all against
        one checkpoint (for evidence bundles)."""
        receipt = self.receipt(record_id)
        proof = receipt.log
        assert isinstance(proof, LogProof)
        events = self.events(record_id)  # checked
        rows = {
            i: _blob(leaf)
            for i, leaf in self._db.execute(
                "SELECT leaf_index, leaf FROM events WHERE record_id=? AND leaf_index<?",
                (record_id, proof.tree_size),
            )
        }
        root = bytes.fromhex(proof.root_hash)
        return receipt, [
            self._proof_at(
                e["leaf_index"], rows[e["leaf_index"]], proof.tree_size, root, proof.checkpoint
            )
            for e in events
            if e["leaf_index"] in rows
        ]

    def events(self, record_id: str) -> list[dict[str, Any]]:
        """The transfers and notes about the record, in log order, each *checked*: its
        signature, that its signer owned the record then, and its leaf's inclusion under the
        latest checkpoint (:class:`LedgerIntegrityError` otherwise)."""
        record = self.receipt(record_id).record
        size, root, note = self._latest_checkpoint()
        checked: list[dict[str, Any]] = []
        rows = self._db.execute(
            "SELECT leaf_index, leaf FROM events WHERE record_id=? ORDER BY leaf_index",
            (record_id,),
        ).fetchall()
        for index, raw in rows:
            leaf = _blob(raw)
            proof = self._proof_at(index, leaf, size, root, note)
            try:
                check_inclusion(proof, self._public, origin=self.origin)
                event = parse_event_leaf(leaf)
                if event["record_id"] != record_id:
                    raise InvalidProofError(f"the leaf is about record {event['record_id']}")
                if event["signer_key"] != current_owner_key(record, checked):
                    raise InvalidProofError("its signer did not own the record then")
            except (InvalidProofError, InvalidEventError) as exc:
                raise LedgerIntegrityError(
                    f"ledger integrity failure: event at leaf {index} on record {record_id}: "
                    f"{exc}; `blockimage audit` reports every fault"
                ) from None
            checked.append({**event, "leaf_index": index})
        return checked

    @staticmethod
    def _refuse_registered_content(db: sqlite3.Connection, record: Record) -> None:
        """The content rules every ledger backend enforces (the chaincode does too)."""
        owner = db.execute(
            "SELECT record_id FROM leaves WHERE sha256_file IN (?1, ?2) "
            "OR sha256_pixels IN (?1, ?2) LIMIT 1",
            (record.sha256_file, record.sha256_pixels),
        ).fetchone()
        if owner is None and record.parent is None:
            owner = db.execute(
                "SELECT record_id FROM leaves WHERE original_sha256_file=?1 OR sha256_file=?1 "
                "LIMIT 1",
                (record.original_sha256_file,),
            ).fetchone()
        if owner is not None:
            raise DuplicateContentError(
                f"record {record.record_id}: its content is already registered as record {owner[0]}"
            )

    def _sign_checkpoint(self, db: sqlite3.Connection, size: int) -> tuple[int, bytes, str]:
        root = self._subtree(0, size)
        note = sign_checkpoint(Checkpoint(self.origin, size, root), self._key, name=self.origin)
        db.execute("INSERT INTO checkpoints VALUES (?, ?, ?)", (size, root, note))
        return size, root, note

    def get(self, record_id: str) -> Record:
        row = self._db.execute("SELECT leaf FROM leaves WHERE record_id=?", (record_id,)).fetchone()
        if row is None:
            raise RecordNotFoundError(f"no record {record_id} on the ledger")
        return Record.from_leaf(_blob(row[0]))

    def proof(self, record_id: str) -> LogProof:
        proof = self.receipt(record_id).log
        assert isinstance(proof, LogProof)
        return proof

    def receipt(self, record_id: str) -> Receipt:
        row = self._db.execute(
            "SELECT leaf_index, leaf FROM leaves WHERE record_id=?", (record_id,)
        ).fetchone()
        if row is None:
            raise RecordNotFoundError(f"no record {record_id} on the ledger")
        size, root, note = self._latest_checkpoint()
        proof = self._proof_at(row[0], _blob(row[1]), size, root, note)
        return Receipt(self._checked(proof, record_id), proof)

    def _checked(self, proof: LogProof, record_id: str) -> Record:
        """The record of ``proof`` once signature, inclusion and checkpoint check (a few
        SQLite reads and two Ed25519 verifications)."""
        try:
            record = check_log_proof(proof, self._public, origin=self.origin)
            if record.record_id != record_id:
                raise InvalidProofError(f"the leaf holds record {record.record_id}")
        except InvalidProofError as exc:
            raise LedgerIntegrityError(
                f"ledger integrity failure: record {record_id} (leaf {proof.leaf_index}): {exc}; "
                "`blockimage audit` reports every fault; restore ledger.db from a backup"
            ) from None
        return record

    def find_by_sha256(self, digest: str) -> list[Record]:
        rows = self._db.execute(
            "SELECT leaf FROM leaves WHERE sha256_file=?1 OR sha256_pixels=?1 "
            "OR original_sha256_file=?1 ORDER BY leaf_index",
            (digest,),
        ).fetchall()
        return [Record.from_leaf(_blob(r[0])) for r in rows]

    def by_owner(self, owner: str) -> list[Record]:
        rows = self._db.execute(
            "SELECT leaf FROM leaves WHERE owner=? ORDER BY leaf_index", (owner,)
        ).fetchall()
        return [Record.from_leaf(_blob(r[0])) for r in rows]

    def history(self, record_id: str) -> list[Record]:
        rows = self._db.execute(
            """
            WITH RECURSIVE family(record_id) AS (
                SELECT record_id FROM leaves WHERE record_id = ?
                UNION
                SELECT l.record_id FROM leaves l JOIN family f ON l.parent = f.record_id
            )
            SELECT leaf_index, leaf, record_id FROM leaves
            WHERE record_id IN (SELECT record_id FROM family) ORDER BY leaf_index
            """,
            (record_id,),
        ).fetchall()
        if not rows:
            raise RecordNotFoundError(f"no record {record_id} on the ledger")
        size, root, note = self._latest_checkpoint()
        family: list[Record] = []
        for index, leaf, member in rows:
            record = self._checked(self._proof_at(index, _blob(leaf), size, root, note), member)
            if family and record.parent not in {r.record_id for r in family}:
                raise LedgerIntegrityError(
                    f"ledger integrity failure: record {member} (leaf {index}) is listed as a "
                    f"derivative in the history of {record_id}, but its signed parent is "
                    f"{record.parent}; `blockimage audit` reports every fault"
                )
            family.append(record)
        return family

    def records(self, start: int = 0) -> Iterator[tuple[int, Record]]:
        cursor = self._db.execute(
            "SELECT leaf_index, leaf FROM leaves WHERE leaf_index >= ? ORDER BY leaf_index",
            (start,),
        )
        for index, leaf in cursor:
            yield index, Record.from_leaf(_blob(leaf))

    def consistency_proof(self, first: int, second: int | None = None) -> list[str]:
        """RFC 9162 consistency proof between two tree sizes (default: the current size)."""
        second = self.size() if second is None else second
        if second > self.size():
            raise LedgerError(f"the log has {self.size()} leaves, not {second}")
        return [h.hex() for h in consistency_path(first, second, self._subtree)]

    def checkpoint(self) -> str:
        """The latest signed checkpoint (C2SP signed note), its signature checked."""
        return self.latest()[0]

    def latest(self) -> tuple[str, Checkpoint]:
        """The latest signed checkpoint: its note and what it signs, its signature checked."""
        _, _, note = self._latest_checkpoint()
        return note, self._open(note, "the latest checkpoint")

    def check_receipt(self, receipt: Receipt) -> Checkpoint:
        """Check a receipt saved earlier against the log as it is now: the record's signature,
        its inclusion under the receipt's checkpoint (signed by this log's key), and that the
        receipt's tree is a prefix of today's (RFC 9162 consistency proof). Returns the current
        checkpoint; raises :class:`InvalidProofError` naming the first fault."""
        proof = receipt.log
        if not isinstance(proof, LogProof):
            raise InvalidProofError("the receipt carries a Fabric proof, not a Merkle log proof")
        record = check_log_proof(proof, self._public, origin=self.origin)
        if record != receipt.record:
            raise InvalidProofError(
                f"the receipt's record fields differ from the signed leaf of {record.record_id}"
            )
        old = open_log_checkpoint(proof.checkpoint, self._public, origin=self.origin)
        _, new = self.latest()
        path = (
            consistency_path(old.tree_size, new.tree_size, self._subtree)
            if 0 < old.tree_size < new.tree_size
            else []
        )
        check_consistency(old, new, path)
        return new

    # -- audit ------------------------------------------------------------------------------------
    def audit(
        self, start: int = 0, progress: Callable[[int, int], None] | None = None
    ) -> AuditReport:
        """Re-verify the log from its raw rows; raise :class:`AuditFailure` at the first fault.

        Checks, in log order: leaf indices are contiguous; each leaf parses as a record whose
        owner signature verifies and whose lookup columns match its content; every stored node
        equals the hash recomputed from the leaves; every checkpoint's signature verifies and its
        root equals the root recomputed for its size; the latest checkpoint covers every leaf.

        Everything is streamed in one read transaction (memory does not grow with the log).
        ``start`` resumes an audit at that leaf: the tree of the leaves before it is taken from
        the stored perfect subtrees (checked against the checkpoint at that size, if any).
        ``progress(done, total)`` is called every 10,000 leaves.
        """
        self._db.execute("BEGIN")  # one snapshot, however long the audit takes
        try:
            return self._audit(start, progress)
        finally:
            self._db.execute("COMMIT")

    def _audit(self, start: int, progress: Callable[[int, int], None] | None) -> AuditReport:
        total = self.size()
        if not 0 <= start <= total:
            raise LedgerError(f"cannot start an audit at leaf {start}: the log has {total}")
        levels: dict[int, Iterator[tuple[int, bytes]]] = {}

        def check_node(level: int, idx: int, h: bytes) -> None:
            # Nodes of one level are visited in increasing index: one cursor per level.
            if level not in levels:
                levels[level] = iter(
                    self._db.execute(
                        "SELECT idx, hash FROM nodes WHERE level=? AND idx>=? ORDER BY idx",
                        (level, idx),
                    )
                )
            stored = next((row for row in levels[level] if row[0] >= idx), None)
            if stored is None or stored[0] != idx:
                raise AuditFailure(f"node (level {level}, index {idx}) is missing from the log")
            if _blob(stored[1]) != h:
                what = f"leaf {idx}" if level == 0 else f"node (level {level}, index {idx})"
                raise AuditFailure(
                    f"{what}: stored hash {_blob(stored[1]).hex()} != recomputed {h.hex()}"
                )

        acc = RootAccumulator.resume(start, self._node, on_node=check_node)
        checkpoints = iter(
            self._db.execute(
                "SELECT tree_size, root_hash, note FROM checkpoints WHERE tree_size>=? "
                "ORDER BY tree_size",
                (start,),
            )
        )
        pending = next(checkpoints, None)
        checked = covered = 0

        def check_checkpoints() -> None:
            nonlocal pending, covered
            while pending is not None and pending[0] <= acc.size:
                if pending[0] < acc.size:
                    raise AuditFailure(
                        f"checkpoint for tree size {pending[0]} was not reached by the leaves"
                    )
                self._audit_checkpoint(acc.size, acc.root(), _blob(pending[1]), pending[2])
                covered += 1
                pending = next(checkpoints, None)

        check_checkpoints()  # the checkpoint at ``start``, if resuming
        columns = ", ".join(_LOOKUP_COLUMNS)
        nulls = ", ".join(["NULL"] * (len(_LOOKUP_COLUMNS) - 2))
        # Records and events share the leaf sequence: one stream in leaf order. An event row
        # carries its record id and signature where a record row has its lookup columns.
        cursor = self._db.execute(
            f"SELECT leaf_index, leaf, 0, {columns} FROM leaves WHERE leaf_index>=?1 "
            f"UNION ALL SELECT leaf_index, leaf, 1, record_id, signature, {nulls} "
            "FROM events WHERE leaf_index>=?1 ORDER BY 1",
            (start,),
        )
        owners = self._owners_before(start)  # records with events -> current owner key
        with ThreadPoolExecutor(max_workers=_VERIFY_THREADS) as pool:
            while batch := cursor.fetchmany(_AUDIT_BATCH):
                # Owner signatures are checked on worker threads (Ed25519 releases the GIL);
                # the faults are then raised in leaf order, as a serial audit would.
                checked_rows = pool.map(
                    _parsed_and_verified, [None if r[2] else _blob(r[1]) for r in batch]
                )
                for row, (record, fault) in zip(batch, checked_rows, strict=True):
                    index, leaf = row[0], _blob(row[1])
                    if index != acc.size:
                        raise AuditFailure(
                            f"leaf index {acc.size} is missing (next row is {index})"
                        )
                    if row[2]:
                        _audit_event(index, leaf, row[3], row[4], owners)
                        acc.append(leaf_hash(leaf))
                        check_checkpoints()
                        continue
                    if fault is not None:
                        raise AuditFailure(f"leaf {index}: {fault}")
                    assert record is not None
                    if record.record_id in owners:
                        owners[record.record_id] = record.owner_key
                    for name, value in zip(_LOOKUP_COLUMNS, row[3:], strict=True):
                        if getattr(record, name) != value:
                            raise AuditFailure(
                                f"leaf {index} (record {record.record_id}): column {name} is "
                                f"{value!r} but the signed record says {getattr(record, name)!r}"
                            )
                    acc.append(leaf_hash(leaf))
                    checked += 1
                    check_checkpoints()
                    if progress is not None and acc.size % 10_000 == 0:
                        progress(acc.size, total)
        size = acc.size
        if pending is not None:
            raise AuditFailure(
                f"checkpoint for tree size {pending[0]} exists but the log has only {size} leaves"
            )
        if (
            size
            and not self._db.execute(
                "SELECT 1 FROM checkpoints WHERE tree_size=?", (size,)
            ).fetchone()
        ):
            raise AuditFailure(f"no checkpoint covers the latest tree size {size}")
        return AuditReport(
            tree_size=size,
            root_hash=acc.root().hex(),
            checkpoints_checked=covered,
            records_checked=checked,
        )

    def _owners_before(self, start: int) -> dict[str, str | None]:
        """Records that have events -> their owner key just before leaf ``start`` (None until
        the audit reaches the record)."""
        owners: dict[str, str | None] = {}
        for (record_id,) in self._db.execute("SELECT DISTINCT record_id FROM events"):
            row = self._db.execute(
                "SELECT leaf_index, leaf FROM leaves WHERE record_id=?", (record_id,)
            ).fetchone()
            if row is None or row[0] >= start:
                owners[record_id] = None
                continue
            record = Record.from_leaf(_blob(row[1]))
            owners[record_id] = current_owner_key(record, self._event_rows(record_id, start))
        return owners

    def _audit_checkpoint(self, size: int, root: bytes, stored_root: bytes, note: str) -> None:
        try:
            cp = open_checkpoint(note, self._public, name=self.origin)
        except InvalidCheckpointError as exc:
            raise AuditFailure(f"checkpoint at size {size}: {exc}") from None
        if cp.tree_size != size or cp.root_hash != root or stored_root != root:
            raise AuditFailure(
                f"checkpoint at size {size}: signed root {cp.root_hash.hex()} "
                f"(stored {stored_root.hex()}) != root recomputed from the leaves {root.hex()}"
            )

    # -- the largest checkpoint signed (rollbacks) -----------------------------------------------
    def _open(self, note: str, what: str) -> Checkpoint:
        try:
            return open_log_checkpoint(note, self._public, origin=self.origin)
        except InvalidProofError as exc:
            raise LedgerIntegrityError(f"ledger integrity failure: {what}: {exc}") from None

    def _check_head(self) -> None:
        """Refuse a log smaller than the largest checkpoint this node signed, or whose first
        leaves no longer hash to that checkpoint's root; remember a larger one."""
        try:
            text = self.head_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = None
        row = self._db.execute(
            "SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1"
        ).fetchone()
        latest, note = (row[0], row[1]) if row else (0, None)
        if text is None and note is not None:  # a home made before ledger.head, or it was lost
            text = note
        if text is not None:
            head = self._open(text, str(self.head_path))
            size = min(latest, self.size())
            if size < head.tree_size:
                raise LedgerIntegrityError(
                    f"ledger integrity failure: the log has {size} records, but this node "
                    f"signed a checkpoint for {head.tree_size} ({self.head_path}): records were "
                    "removed (a rollback); restore ledger.db from a backup (README: Backing up a "
                    "home)"
                )
            if head.tree_size and self._subtree(0, head.tree_size) != head.root_hash:
                raise LedgerIntegrityError(
                    f"ledger integrity failure: the log's first {head.tree_size} records no "
                    f"longer hash to the root this node signed ({self.head_path}): they were "
                    "rewritten; restore ledger.db from a backup (README: Backing up a home)"
                )
            if latest <= head.tree_size and self.head_path.exists():
                return
        if note is not None:
            try:
                with exclusive_lock(self._head_lock):
                    self._remember(latest, note)
            except OSError:  # a read-only home: checked, but nothing new to remember in it
                pass

    def _remember(self, size: int, note: str) -> None:
        """Keep ``note`` as the largest checkpoint signed, unless a larger one is kept (called
        under the head lock, after the commit: a crash in between only forgets)."""
        try:
            kept = int(self.head_path.read_text(encoding="utf-8").split("\n")[1])
        except (FileNotFoundError, IndexError, ValueError):
            kept = -1
        if size > kept:
            try:
                write_atomic(self.head_path, note.encode("utf-8"))
            except OSError:  # the append is committed; the next open catches the head up
                pass

    # -- internals --------------------------------------------------------------------------------
    def _node(self, level: int, idx: int) -> bytes:
        row = self._db.execute(
            "SELECT hash FROM nodes WHERE level=? AND idx=?", (level, idx)
        ).fetchone()
        if row is None:
            raise LedgerError(f"log is missing node (level {level}, index {idx})")
        return _blob(row[0])

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) from stored perfect subtrees (start is aligned, as RFC splits are)."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return self._node(n.bit_length() - 1, start // n)
        k = largest_power_of_two_below(n)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def _latest_checkpoint(self) -> tuple[int, bytes, str]:
        row = self._db.execute(
            "SELECT tree_size, root_hash, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise LedgerError("the log has no checkpoint yet")
        return row[0], _blob(row[1]), row[2]

    def _proof_at(self, index: int, leaf: bytes, size: int, root: bytes, note: str) -> LogProof:
        path = inclusion_path(index, size, self._subtree)
        return LogProof(
            leaf_index=index,
            tree_size=size,
            root_hash=root.hex(),
            inclusion_path=tuple(p.hex() for p in path),
            leaf=bytes(leaf),
            checkpoint=note,
        )


def _parsed_and_verified(leaf: bytes | None) -> tuple[Record | None, str | None]:
    """The record in ``leaf`` and None, or None and why it does not parse or verify (None for
    an event's row, which the audit checks in order)."""
    if leaf is None:
        return None, None
    try:
        record = Record.from_leaf(leaf)
        verify_record_signature(record)
    except (RecordFormatError, InvalidRecordSignatureError) as exc:
        return None, str(exc)
    return record, None


def _blob(value: bytes | str) -> bytes:
    """Bytes of a stored BLOB; a hand edit may have turned it into TEXT (audit reports it)."""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _audit_event(
    index: int, leaf: bytes, record_id: str, signature: str, owners: dict[str, str | None]
) -> None:
    """Check an event leaf in log order: its form and signature, its lookup columns, and that
    its signer owned the record at that point (``owners`` follows transfers)."""
    try:
        event = parse_event_leaf(leaf)
    except InvalidEventError as exc:
        raise AuditFailure(f"leaf {index}: {exc}") from None
    if (event["record_id"], event["signature"]) != (record_id, signature):
        raise AuditFailure(f"leaf {index}: the event's columns do not match its signed bytes")
    owner = owners.get(record_id)
    if owner is None:
        raise AuditFailure(
            f"leaf {index}: an event about record {record_id}, not on the log before it"
        )
    if event["signer_key"] != owner:
        raise AuditFailure(
            f"leaf {index}: the {event['kind']} event on record {record_id} is not signed by "
            "the record's owner at that point"
        )
    if event["kind"] == "transfer":
        owners[record_id] = event["to_key"]
