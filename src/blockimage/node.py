"""The composition root: a node's home, its backends and matchers, wired into the two flows.

Node owns no algorithm and no flow. It opens the home (config, keys), builds the storage and
ledger backends the settings name (or takes the ones it is given, as ``httpx.Client`` takes a
transport), finds the matchers (:mod:`blockimage.matchers`, whose indexes open on first use),
and hands each call to :class:`~blockimage.registration.Registrar` (register) or
:class:`~blockimage.verification.Verifier` (verify). Every input enters through
:func:`blockimage.inputs.load_image` under the node's limits.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import DEFAULT_BACKBONE, DEFAULT_CONFIG, Settings, load_settings, resolve_home
from .errors import BackendUnavailableError, InvalidInputError
from .files import write_atomic
from .inputs import ImageSource, LoadedImage, load_image
from .keys import KeyStore, check_owner_name
from .ledger import AuditFailure, AuditReport, Ledger, open_ledger
from .ledger.proofs import log_origin, note_verifier_key
from .records import LogProof, Receipt, Record, Verdict
from .storage import Storage, StorageError, open_storage

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .ledger.checkpoint import Checkpoint
    from .ledger.log import MerkleLog
    from .matchers import Matcher
    from .matchers.pdq import PdqIndex, PdqIndexAudit
    from .registration import Registrar
    from .resolution import Resolver
    from .verification import Evidence, Verifier

__all__ = ["Node"]


class Node:
    """A BlockImage node rooted at ``home`` (README: Home layout).

    ``storage`` and ``ledger`` replace the backends the settings name; the node closes them
    with itself. ``progress`` receives a line now and then during long work (rebuilding a
    derived index, an audit).

    >>> node = Node("/tmp/bi-home")            # doctest: +SKIP
    >>> receipt = node.register("photo.jpg", owner="alice")   # doctest: +SKIP
    >>> node.verify(receipt.output).verdict    # doctest: +SKIP
    'authentic'
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        storage: Storage | None = None,
        ledger: Ledger | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.home = resolve_home(home)
        self.progress = progress or _no_progress
        created = not (self.home / "config.toml").exists()
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if created:
            write_atomic(self.home / "config.toml", DEFAULT_CONFIG.encode())
        self.settings: Settings = load_settings(self.home)
        self.keys = KeyStore(self.home / "keys")
        node_key = self.keys.node_key()
        self.node_public_key = node_key.public_key().public_bytes_raw().hex()
        self.ledger_origin = log_origin(bytes.fromhex(self.node_public_key))
        self.keys.api_token()  # created at init, read by `serve`
        # The Content Credentials signer: made at init, checked at every open, read once.
        self._c2pa = self.keys.c2pa_identity()
        self._watermark_key = self.keys.watermark_key()  # made at init, checked at every open
        self.storage: Storage = storage if storage is not None else open_storage(self.settings)
        self.ledger: Ledger = (
            ledger
            if ledger is not None
            else open_ledger(self.settings, node_key, origin=self.ledger_origin)
        )
        self._tag_model = self._backbone()  # a configured model that is missing: now

    # The flows and their matchers are built on first use: `history`, `get` and `audit` need
    # none of their libraries (OpenCV, onnxruntime, FAISS), and a CLI call that only reads the
    # ledger starts in a fraction of the time.
    def _backbone(self) -> Path | None:
        """The configured tag model's file, checked now; None for the shipped default."""
        if self.settings.backbone == DEFAULT_BACKBONE:
            return None
        from .analysis.classifier import backbone_model  # raises if the file is missing

        return backbone_model(self.settings.backbone, self.home / "models")

    def _tags_from(self) -> Path:
        from .analysis.classifier import DEFAULT_MODEL

        return self._tag_model or DEFAULT_MODEL

    @cached_property
    def matchers(self) -> list[Matcher]:
        from .matchers import MatcherParts, load_matchers

        return load_matchers(
            MatcherParts(
                ledger=self.ledger,
                storage=self.storage,
                index_dir=self.home / "index",
                max_pixels=self.settings.max_pixels,
                progress=self.progress,
            )
        )

    @cached_property
    def registrar(self) -> Registrar:
        from .registration import Registrar

        return Registrar(
            self.ledger,
            self.storage,
            self.keys,
            self.matchers,
            max_pixels=self.settings.max_pixels,
            tag_model=self._tags_from(),
            log_origin=self.ledger_origin,
            c2pa_identity=self._c2pa,
        )

    @cached_property
    def verifier(self) -> Verifier:
        from .verification import Verifier

        return Verifier(
            self.ledger,
            self.storage,
            self.matchers,
            watermark_key=self._watermark_key,
            max_pixels=self.settings.max_pixels,
            tag_model=self._tags_from(),
            c2pa_anchors=self._c2pa.anchor_pem.decode("ascii"),
        )

    @cached_property
    def resolver(self) -> Resolver:
        """C2PA soft-binding resolution (``serve``'s ``/matches`` and ``/manifests`` routes)."""
        from .resolution import Resolver

        return Resolver(self.ledger, self.storage, self.matchers, self._watermark_key)

    def close(self) -> None:
        opened = self.__dict__.get("matchers", [])
        for part in (*opened, self.ledger, self.storage):
            close = getattr(part, "close", None)
            if close:
                close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self, source: ImageSource | LoadedImage) -> LoadedImage:
        """Read and decode an input under this node's limits (``[limits]`` in config.toml);
        an input loaded already (by :func:`~blockimage.inputs.load_image`) is taken as is."""
        if isinstance(source, LoadedImage):
            return source
        return load_image(
            source,
            max_pixels=self.settings.max_pixels,
            max_file_bytes=self.settings.max_file_bytes,
        )

    # -- the two flows ----------------------------------------------------------------------------
    def register(
        self,
        source: ImageSource | LoadedImage,
        *,
        owner: str,
        parent: str | None = None,
        out: str | os.PathLike[str] | None = None,
        c2pa: bool = True,
        thumbnail: bool = False,
    ) -> Receipt:
        """Register an image: the five steps (docs/ARCHITECTURE.md), returning the signed receipt.

        ``c2pa``: sign our Content Credentials into the registered file (JPEG, PNG, WebP);
        ``thumbnail``: with thumbnails in the manifest.

        ``out`` is a directory for the registered (watermarked) file; by default it is written
        next to the input as ``NAME.bi.EXT``. For array or bytes input nothing is written
        unless ``out`` is given. Raises :class:`~blockimage.imaging.InvalidImageError`,
        :class:`~blockimage.errors.DuplicateContentError`,
        :class:`~blockimage.ledger.RecordNotFoundError` (bad ``parent``) before anything is
        written; every error is a :class:`~blockimage.errors.BlockImageError`.
        """
        return self.registrar.register(
            self.load(source), owner=owner, parent=parent, out=out, c2pa=c2pa, thumbnail=thumbnail
        )

    def verify(self, source: ImageSource | LoadedImage) -> Verdict:
        """Find the registered record an image comes from and judge it (a
        :class:`~blockimage.records.Verdict`)."""
        return self.verify_detailed(source).verdict

    def verify_detailed(self, source: ImageSource | LoadedImage) -> Evidence:
        """:meth:`verify`, plus the images behind the verdict (for reports)."""
        return self.verifier.verify(self.load(source))

    # -- other commands ---------------------------------------------------------------------------
    def history(self, record_id: str) -> list[Record]:
        return self.ledger.history(record_id)

    def events(self, record_id: str) -> list[dict[str, Any]]:
        """The transfers and notes about the record, in log order, checked."""
        return self.ledger.events(record_id)

    def owner_of(self, record_id: str) -> str:
        """The name of the record's current owner (after the transfers)."""
        record = self.ledger.receipt(record_id).record
        names = [e["to"] for e in self.ledger.events(record_id) if e["kind"] == "transfer"]
        return names[-1] if names else record.owner

    def transfer(self, record_id: str, to: str, *, to_key: str | None = None) -> dict[str, Any]:
        """Move the record to owner ``to``, signed by the current owner's key in this home.
        ``to_key`` (hex) names the new owner's public key; without it, the key this home
        holds (or makes) for ``to``."""
        check_owner_name(to)
        if to_key is None:
            to_key = self.keys.owner_key(to).public_key().public_bytes_raw().hex()
        return self.ledger.add_event(
            record_id, "transfer", self._current_owner_key(record_id), to=to, to_key=to_key
        )

    def note(self, record_id: str, text: str) -> dict[str, Any]:
        """Annotate the record, signed by the current owner's key in this home."""
        return self.ledger.add_event(
            record_id, "note", self._current_owner_key(record_id), note=text
        )

    def _current_owner_key(self, record_id: str) -> Ed25519PrivateKey:
        owner = self.owner_of(record_id)
        if not self.keys.has_owner_key(owner):
            raise InvalidInputError(
                f"record {record_id} belongs to {owner}, whose key is not in this home: only "
                "the current owner signs its transfers and notes"
            )
        return self.keys.owner_key(owner)

    def get(self, cid: str) -> bytes:
        return self.storage.get(cid)

    def export_bundle(self, record_id: str) -> bytes:
        """A CAR evidence bundle for ``record_id`` (see :mod:`blockimage.bundle`)."""
        from .ledger.log import MerkleLog

        if not isinstance(self.ledger, MerkleLog):
            raise BackendUnavailableError(
                "evidence bundles carry a Merkle log proof and need the embedded ledger; on "
                "Fabric, the receipt's ledger proof (channel, transaction id, block number) is "
                "the evidence, to check on the channel"
            )
        receipt, events = self.ledger.evidence(record_id)  # checked, or LedgerIntegrityError
        record, proof = receipt.record, receipt.log
        assert isinstance(proof, LogProof)
        from .bundle import make_bundle

        return make_bundle(
            proof,
            self.storage.export_car(record.cid),
            origin=self.ledger_origin,
            log_public_key=bytes.fromhex(self.node_public_key),
            events=events,
        )

    # -- evidence a third party checks (the embedded log) ------------------------------------------
    @property
    def log_key(self) -> str:
        """The log's verifier key in Go note form (``name+keyhash+base64``), to publish."""
        return note_verifier_key(self.ledger_origin, bytes.fromhex(self.node_public_key))

    def _merkle_log(self, what: str) -> MerkleLog:
        from .ledger.log import MerkleLog

        if not isinstance(self.ledger, MerkleLog):
            raise BackendUnavailableError(
                f"{what} is evidence of the embedded Merkle log; on Fabric the channel's blocks "
                "are the evidence (each receipt names its transaction and block)"
            )
        return self.ledger

    def checkpoint(self) -> str:
        """The latest signed checkpoint (C2SP signed note)."""
        return self._merkle_log("a checkpoint").checkpoint()

    def consistency(self, old_size: int, new_size: int | None = None) -> tuple[int, list[str]]:
        """(``new_size``, the RFC 9162 consistency proof in hex) from tree size ``old_size`` to
        ``new_size`` (default: the latest checkpoint's)."""
        log = self._merkle_log("a consistency proof")
        latest = log.latest()[1].tree_size
        new_size = latest if new_size is None else new_size
        if not 0 < old_size <= new_size <= latest:
            raise InvalidInputError(
                f"a consistency proof needs 0 < OLD_SIZE <= NEW_SIZE <= {latest} (the latest "
                f"checkpoint's size), not {old_size} and {new_size}"
            )
        return new_size, log.consistency_proof(old_size, new_size)

    def verify_receipt(self, receipt: Receipt) -> Checkpoint:
        """Check a saved receipt against the log now (signature, inclusion under the receipt's
        checkpoint, consistency from it to the latest); return the latest checkpoint."""
        return self._merkle_log("a receipt's log proof").check_receipt(receipt)

    def audit(self, start: int = 0) -> AuditReport:
        """Re-verify the ledger from leaf ``start`` (streaming, see ``Ledger.audit``), then
        that every record's CID from there on is stored and hashes right. Progress goes to
        this node's ``progress``."""

        def ledger_progress(done: int, total: int) -> None:
            self.progress(f"audit: ledger {done:,} of {total:,} records")

        report = self.ledger.audit(start, ledger_progress)
        pdq = self._pdq_audit() if start == 0 else None
        try:
            cids = self._audit_storage(start, report.tree_size, pdq)
            rebuilt: tuple[str, ...] = ()
            fault = pdq[1].finish() if pdq is not None else None
            if pdq is not None and fault is not None:
                # Derived data: rebuilt from the checked ledger; a note, not a failure.
                self.progress(
                    f"audit: the PDQ index disagrees with the ledger ({fault}): rebuilding"
                )
                pdq[0].rebuild(self.ledger, self.progress)
                rebuilt = (f"pdq: {fault}",)
        finally:
            if pdq is not None:
                pdq[0].close()
        leftovers = None
        if start == 0 and hasattr(self.storage, "unreferenced"):
            leftovers = len(self.garbage())
        return AuditReport(
            tree_size=report.tree_size,
            root_hash=report.root_hash,
            checkpoints_checked=report.checkpoints_checked,
            records_checked=report.records_checked,
            cids_checked=cids,
            unreferenced_files=leftovers,
            indexes_rebuilt=rebuilt,
        )

    def _audit_storage(
        self, start: int, total: int, pdq: tuple[PdqIndex, PdqIndexAudit] | None
    ) -> int:
        """Check that every record's CID from leaf ``start`` is stored and hashes right (and
        feed the PDQ index check); return how many were checked."""
        cids = 0
        for index, record in self.ledger.records(start):
            if pdq is not None:
                pdq[1].add(index, record)
            try:
                data = self.storage.get(record.cid)
            except StorageError as exc:
                raise AuditFailure(f"leaf {index} (record {record.record_id}): {exc}") from None
            got = hashlib.sha256(data).hexdigest()
            if got != record.sha256_file:
                raise AuditFailure(
                    f"leaf {index} (record {record.record_id}): content of {record.cid} has "
                    f"SHA-256 {got}, the record says {record.sha256_file}"
                )
            cids += 1
            if cids % 10_000 == 0:
                self.progress(f"audit: stored images {index + 1:,} of {total:,}")
        return cids

    def _pdq_audit(self) -> tuple[PdqIndex, PdqIndexAudit] | None:
        """The PDQ index and a checker the audit feeds, if the home has the index. (The
        keypoint and embedding indexes are derived from the images; they only propose
        candidates that the pixels and the checked record must confirm.)"""
        if not (self.home / "index" / "pdq.record").exists():
            return None
        from .matchers.pdq import PdqIndex, PdqIndexAudit

        index = PdqIndex(self.home / "index")
        return index, PdqIndexAudit(index)

    def garbage(self) -> list[Path]:
        """Files of the embedded blockstore that no record uses: blocks of registrations
        that never committed, and staging files of processes that are gone."""
        unreferenced = getattr(self.storage, "unreferenced", None)
        if unreferenced is None:
            raise BackendUnavailableError(
                "gc works on the embedded blockstore; a Kubo node collects its own garbage "
                "(`ipfs repo gc`; BlockImage pins what it stores)"
            )
        found: list[Path] = unreferenced(record.cid for _, record in self.ledger.records())
        return found

    def gc(self, *, dry_run: bool = False) -> tuple[int, int]:
        """Remove :meth:`garbage` (unless ``dry_run``); return (files, bytes)."""
        found = self.garbage()
        size = 0
        for path in found:
            try:
                size += path.stat().st_size
                if not dry_run:
                    path.unlink()
            except FileNotFoundError:
                continue
        return len(found), size


def _no_progress(message: str) -> None:
    pass
