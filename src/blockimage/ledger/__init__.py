"""The tamper-evident ledger of signed records.

Every backend implements :class:`Ledger` and passes the same contract tests
(tests/test_ledger_contract.py). The embedded default is :class:`~blockimage.ledger.log.MerkleLog`,
an append-only RFC 9162 Merkle log in SQLite with signed checkpoints, whose proofs are
:class:`~blockimage.records.LogProof`; :class:`~blockimage.ledger.fabric.FabricLedger` keeps the
records on a Hyperledger Fabric channel, and its proofs are
:class:`~blockimage.records.FabricProof` (the committed transaction that wrote the record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import BackendUnavailableError, BlockImageError
from ..records import FabricProof, LogProof, Receipt, Record

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ..config import Settings

__all__ = [
    "Ledger",
    "LedgerError",
    "LedgerIntegrityError",
    "DuplicateRecordError",
    "RecordNotFoundError",
    "AuditFailure",
    "AuditReport",
    "open_ledger",
]


class LedgerError(BlockImageError, RuntimeError):
    """The ledger refused or failed an operation."""


class LedgerIntegrityError(LedgerError):
    """The ledger's evidence for a record does not check (a signature, a leaf hash, an
    inclusion proof or a checkpoint): no verdict, history or bundle is given on it. The message
    starts with "ledger integrity failure" and names the record and the fault."""


class DuplicateRecordError(LedgerError):
    """A record with this id is already on the ledger."""


class RecordNotFoundError(LedgerError, KeyError):
    """No record with this id is on the ledger."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "record not found"


class AuditFailure(LedgerError):
    """The ledger (or the storage it points to) failed an integrity check.

    The message names the first fault precisely: which leaf / checkpoint / CID, expected vs found.
    """


@dataclass(frozen=True)
class AuditReport:
    tree_size: int
    root_hash: str
    checkpoints_checked: int
    records_checked: int
    cids_checked: int = 0
    unreferenced_files: int | None = None  # in the embedded blockstore, on a full audit
    indexes_rebuilt: tuple[str, ...] = ()  # derived indexes that disagreed with the ledger: why


@runtime_checkable
class Ledger(Protocol):
    # Whether other homes (nodes) write to this ledger too: then owner names are not this
    # home's alone, and what this home registered cannot be told from the ledger.
    shared: bool

    def append(
        self, record: Record, *, check: Callable[[], None] | None = None
    ) -> LogProof | FabricProof:
        """Append a signed record atomically; return the proof that it is on the ledger.

        Every backend refuses (:class:`~blockimage.errors.DuplicateContentError`) a record
        whose registered file or pixels are another record's, and one without a parent whose
        submitted file is another record's original or registered file. ``check`` runs just
        before the write and may raise to refuse it: on the Merkle log under its write lock,
        so that a check-then-append is one atomic step across processes.
        """
        ...

    def get(self, record_id: str) -> Record:
        """The record with this id; raises :class:`RecordNotFoundError`."""
        ...

    def proof(self, record_id: str) -> LogProof | FabricProof:
        """The proof that the record is on the ledger (Merkle: against the latest checkpoint),
        checked as :meth:`receipt` checks it."""
        ...

    def receipt(self, record_id: str) -> Receipt:
        """The record with the proof that it is on the ledger, both *checked*: the owner
        signature always; on the Merkle log also the leaf's inclusion under the latest
        checkpoint and that checkpoint's signature by the node key. Raises
        :class:`RecordNotFoundError`, or :class:`LedgerIntegrityError` when the evidence does
        not check. Every verdict, history and bundle rests on this."""
        ...

    def find_by_sha256(self, digest: str) -> list[Record]:
        """Records whose file, pixel or original-file SHA-256 equals ``digest``."""
        ...

    def by_owner(self, owner: str) -> list[Record]: ...

    def history(self, record_id: str) -> list[Record]:
        """The record, then every later record derived from it (transitively), in log order;
        each checked as :meth:`receipt` checks it (:class:`LedgerIntegrityError` if one fails)."""
        ...

    def add_event(
        self, record_id: str, kind: str, signer: Ed25519PrivateKey, **fields: str
    ) -> dict[str, Any]:
        """Append a signed transfer (``to``, ``to_key``) or note (``note``) about a record
        (:mod:`blockimage.ledger.events`); ``signer`` must hold its current owner key."""
        ...

    def events(self, record_id: str) -> list[dict[str, Any]]:
        """The transfers and notes about the record in log order, each checked
        (:class:`LedgerIntegrityError` otherwise)."""
        ...

    def records(self, start: int = 0) -> Iterator[tuple[int, Record]]:
        """(leaf index, record) pairs in log order from ``start``."""
        ...

    def size(self) -> int: ...

    def audit(
        self, start: int = 0, progress: Callable[[int, int], None] | None = None
    ) -> AuditReport:
        """Re-verify every record from leaf ``start`` on, streaming; raise
        :class:`AuditFailure` at the first fault. ``progress(done, total)`` now and then."""
        ...


def open_ledger(settings: Settings, node_key: Ed25519PrivateKey, *, origin: str) -> Ledger:
    """The ledger backend the settings name (``[ledger] backend``, ``BLOCKIMAGE_LEDGER``).

    ``node_key`` signs the embedded log's checkpoints, which name the log ``origin``.
    """
    if settings.ledger == "fabric":
        try:
            from .fabric import FabricLedger, FabricSettings
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the Fabric ledger needs its client libraries ({exc.name}): "
                "pip install 'blockimage[fabric]'"
            ) from None
        return FabricLedger(FabricSettings.from_mapping(settings.fabric))
    from .log import MerkleLog

    return MerkleLog(settings.home / "ledger.db", node_key, origin=origin)
