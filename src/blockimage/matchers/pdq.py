"""Perceptual matches: PDQ hashes of every record, searched by Hamming distance with FAISS.

PDQ (Meta's 256-bit perceptual hash, :mod:`blockimage.fingerprint`) survives re-encoding,
resizing and mild edits. A registered hash within 31 bits is a match (Meta's threshold); up to
90 bits it is a candidate the pixels must confirm (small crops move PDQ by 30-90 bits; unrelated
photos sit at 106+). Hashes of quality below 50 are not indexed and not searched: PDQ of a
near-flat image is noise.

The index is two column files (:mod:`._columns`: the 32-byte codes and the record ids) derived
from the ledger, which it follows from a remembered position; it opens by memory-mapping them,
whatever the number of records, and is searched exactly by FAISS's Hamming k-NN (``knn_hamming``
over the mapped codes). The ledger stays the truth: a found record's distance is recomputed from
the PDQ hash the ledger holds, and an index that names a record the ledger does not have, or
gives another distance, is rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from ..fingerprint import PDQ_CANDIDATE_DISTANCE, PDQ_MATCH_THRESHOLD, PDQ_MIN_QUALITY, pdq_distance
from ..ledger import Ledger, RecordNotFoundError
from ..records import Record
from . import Candidate, Matcher, Strength, Suspect, open_index_db
from ._columns import ColumnFiles, IndexDamagedError, faiss

__all__ = ["PdqIndex", "PdqIndexAudit", "PdqMatch", "PdqMatcher"]

_MAX_CANDIDATES = 3  # each costs a fetch and a comparison of the stored original
_BATCH = 20_000  # ledger records read per append while catching up


@dataclass(frozen=True)
class PdqMatch:
    record_id: str
    distance: int


class PdqIndex:
    """Every indexed record's PDQ code, in ``DIR/pdq.code`` and ``DIR/pdq.record``."""

    def __init__(self, index_dir: Path) -> None:
        self._db = open_index_db(index_dir)
        self._files = ColumnFiles(
            self._db,
            index_dir,
            "pdq",
            {"code": (np.uint8, 32), "record": (np.uint64, 1)},
            version=f"pdq-v1-quality{PDQ_MIN_QUALITY}",
        )

    def close(self) -> None:
        self._db.close()

    def state(self) -> tuple[int, int]:
        """(ledger leaves looked at, rows indexed)."""
        return self._files.state()

    def sync(
        self,
        ledger: Ledger,
        progress: Callable[[str], None] | None = None,
        *,
        batch_size: int = _BATCH,
    ) -> int:
        """Index the records appended to ``ledger`` since the last sync, ``batch_size`` ledger
        records per append; return how many were indexed."""
        added = 0
        while True:
            start, _ = self._files.state()
            size = ledger.size()
            if start >= size:
                return added
            batch = list(islice(ledger.records(start), batch_size))
            if not batch:
                return added
            kept = [record for _, record in batch if record.pdq_quality >= PDQ_MIN_QUALITY]
            rows: dict[str, np.ndarray] = {
                "code": np.frombuffer(
                    b"".join(bytes.fromhex(r.pdq) for r in kept), dtype=np.uint8
                ).reshape(-1, 32),
                "record": np.array([int(r.record_id, 16) for r in kept], dtype=np.uint64),
            }
            end = batch[-1][0] + 1
            if self._files.append(start, end, rows):  # else another process got there first
                added += len(kept)
                if progress is not None and size - start > batch_size:
                    progress(f"PDQ index: {end:,} of {size:,} records")

    def rebuild(self, ledger: Ledger, progress: Callable[[str], None] | None = None) -> None:
        self._files.reset()
        self.sync(ledger, progress)

    def columns(self) -> dict[str, np.ndarray]:
        """The indexed rows: ``code`` (N x 32 uint8) and ``record`` (N x 1 uint64 ids), in
        ledger order; :class:`IndexDamagedError` if the files are damaged."""
        return self._files.view()

    def nearest(self, pdq_hex: str, *, max_distance: int, k: int) -> list[PdqMatch]:
        """At most ``k`` indexed records within ``max_distance`` bits of ``pdq_hex``, closest
        first. Raises :class:`IndexDamagedError` if the files are damaged."""
        columns = self.columns()
        codes = columns["code"]
        if len(codes) == 0:
            return []
        query = np.frombuffer(bytes.fromhex(pdq_hex), dtype=np.uint8).reshape(1, 32)
        distances, rows = faiss().knn_hamming(query, codes, min(k, len(codes)))
        ids = columns["record"]
        return [
            PdqMatch(f"{int(ids[row, 0]):016x}", int(distance))
            for distance, row in zip(distances[0], rows[0], strict=True)
            if row >= 0 and distance <= max_distance
        ]


class PdqIndexAudit:
    """Compares a PDQ index with the ledger's records as an audit streams them (from leaf 0):
    the rows follow the ledger's order, one per record of PDQ quality >= PDQ_MIN_QUALITY, up to
    the leaves the index has looked at. ``fault`` is the first disagreement, else None."""

    def __init__(self, index: PdqIndex) -> None:
        self.fault: str | None = None
        self._row = 0
        try:
            self._leaves, self._rows = index.state()
            columns = index.columns()
            self._codes, self._ids = columns["code"], columns["record"]
        except IndexDamagedError as exc:
            self.fault, self._leaves, self._rows = str(exc), 0, 0

    def add(self, leaf_index: int, record: Record) -> None:
        if self.fault or leaf_index >= self._leaves or record.pdq_quality < PDQ_MIN_QUALITY:
            return
        row = self._row
        if row >= self._rows:
            self.fault = f"row {row} (record {record.record_id}) is missing"
        elif int(self._ids[row, 0]) != int(record.record_id, 16):
            named = f"{int(self._ids[row, 0]):016x}"
            self.fault = f"row {row} names record {named}, the ledger {record.record_id}"
        elif self._codes[row].tobytes().hex() != record.pdq:
            self.fault = (
                f"row {row} (record {record.record_id}) holds another PDQ hash than the record"
            )
        self._row += 1

    def finish(self) -> str | None:
        if self.fault is None and self._row != self._rows:
            self.fault = f"{self._rows - self._row} row(s) past the ledger's records"
        return self.fault


class PdqMatcher(Matcher):
    name = "pdq"
    order = 30

    _index: PdqIndex | None = None

    def index(self) -> PdqIndex:
        """The index, opened on first use and brought up to date with the ledger at every use
        (two indexed reads when nothing is new): a duplicate check sees what other processes
        registered a moment ago."""
        if self._index is None:
            self._index = PdqIndex(self.parts.index_dir)
        self._index.sync(self.parts.ledger, self.parts.progress)
        return self._index

    def candidates(
        self, suspect: Suspect, *, at_least: Strength = Strength.CANDIDATE
    ) -> Iterator[Candidate]:
        if at_least > Strength.MATCH:
            return
        pdq, quality = suspect.pdq
        if quality < PDQ_MIN_QUALITY:
            return
        limit = PDQ_MATCH_THRESHOLD if at_least == Strength.MATCH else PDQ_CANDIDATE_DISTANCE
        for record, distance in self.nearest(pdq, limit):
            yield Candidate(
                record,
                "pdq",
                Strength.MATCH if distance <= PDQ_MATCH_THRESHOLD else Strength.CANDIDATE,
                f"its PDQ hash is {distance} of 256 bits from the record's",
                rejection=(
                    f"Registered record {record.record_id} is perceptually close (PDQ distance "
                    f"{distance}) but its pixels show a different picture."
                ),
            )

    def nearest(self, pdq: str, limit: int, k: int = _MAX_CANDIDATES) -> list[tuple[Record, int]]:
        """At most ``k`` records within ``limit`` bits of ``pdq``, closest first, with their
        distance recomputed from the ledger; an index that disagrees with the ledger is rebuilt
        from it and asked again."""
        for attempt in (1, 2):
            try:
                found = []
                for match in self.index().nearest(pdq, max_distance=limit, k=k):
                    record = self.parts.ledger.get(match.record_id)
                    if pdq_distance(pdq, record.pdq) != match.distance:
                        raise IndexDamagedError(
                            f"the PDQ index disagrees with record {record.record_id}"
                        )
                    found.append((record, match.distance))
                return found
            except (IndexDamagedError, RecordNotFoundError):
                if attempt == 2:
                    raise
                self.parts.progress("PDQ index damaged: rebuilding it from the ledger")
                self.index().rebuild(self.parts.ledger, self.parts.progress)
        return []

    def explain_miss(self, suspect: Suspect) -> str | None:
        quality = suspect.pdq[1]
        if quality >= PDQ_MIN_QUALITY:
            return None
        return (
            f"The image has little structure (PDQ quality {quality} < {PDQ_MIN_QUALITY}), "
            "so perceptual matching was not attempted."
        )

    def registered(self, record: Record, suspect: Suspect) -> None:
        if self._index is not None:  # else it catches up when it is next used
            self._index.sync(self.parts.ledger)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
