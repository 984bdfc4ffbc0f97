"""Perceptual lookup: the PDQ hashes of every record, searched by Hamming distance.

The ledger is the source of truth; this index is derived from it and catches up on open
(``index.db`` remembers how many leaves it has seen), so a crash between a ledger append and an
index update loses nothing. Search is a vectorised scan over all hashes (numpy popcount): about
a millisecond per 100k records on one core; a sharded / multi-index-hashing search can replace
it behind the same methods when that stops being enough.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fingerprint import PDQ_MATCH_THRESHOLD, PDQ_MIN_QUALITY
from .ledger import Ledger

__all__ = ["PdqIndex", "PdqMatch"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pdq (
    leaf_index INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL,
    pdq BLOB NOT NULL,
    quality INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class PdqMatch:
    record_id: str
    distance: int


class PdqIndex:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        rows = self._db.execute(
            "SELECT leaf_index, record_id, pdq, quality FROM pdq ORDER BY leaf_index"
        ).fetchall()
        self._size = rows[-1][0] + 1 if rows else 0
        self._ids = [r[1] for r in rows]
        self._quality = np.array([r[3] for r in rows], dtype=np.int32)
        self._hashes = (
            np.frombuffer(b"".join(r[2] for r in rows), dtype=np.uint64).reshape(-1, 4)
            if rows
            else np.zeros((0, 4), dtype=np.uint64)
        )

    def close(self) -> None:
        self._db.close()

    def sync(self, ledger: Ledger) -> int:
        """Add the records appended to ``ledger`` since the last sync; return how many."""
        new = list(ledger.records(self._size))
        if not new:
            return 0
        rows = [(i, r.record_id, bytes.fromhex(r.pdq), r.pdq_quality) for i, r in new]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR REPLACE INTO pdq VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._ids.extend(r[1] for r in rows)
        self._quality = np.concatenate([self._quality, [r[3] for r in rows]]).astype(np.int32)
        added = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.uint64).reshape(-1, 4)
        self._hashes = np.concatenate([self._hashes, added])
        self._size = new[-1][0] + 1
        return len(new)

    def nearest(
        self,
        pdq_hex: str,
        *,
        max_distance: int = PDQ_MATCH_THRESHOLD,
        min_quality: int = PDQ_MIN_QUALITY,
    ) -> list[PdqMatch]:
        """Records within ``max_distance`` of ``pdq_hex``, closest first.

        Hashes whose quality is below ``min_quality`` are skipped: PDQ of near-flat images
        is noise and would match unrelated images.
        """
        if not self._ids:
            return []
        query = np.frombuffer(bytes.fromhex(pdq_hex), dtype=np.uint64)
        distances = np.bitwise_count(self._hashes ^ query).sum(axis=1)
        ok = (distances <= max_distance) & (self._quality >= min_quality)
        hits = np.flatnonzero(ok)
        order = hits[np.argsort(distances[hits], kind="stable")]
        return [PdqMatch(self._ids[i], int(distances[i])) for i in order]
