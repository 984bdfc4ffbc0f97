"""Perceptual lookup: the PDQ hashes of every record, searched by Hamming distance.

The ledger is the source of truth; this index is derived from it and catches up on open
(``index.db`` remembers how many leaves it has seen), so a crash between a ledger append and an
index update loses nothing. Search is a vectorised scan over all hashes (numpy popcount): about
a millisecond per 100k records on one core; a sharded / multi-index-hashing search can replace
it behind the same methods when that stops being enough.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .fingerprint import PDQ_MATCH_THRESHOLD, PDQ_MIN_QUALITY
from .keypoints import MIN_INLIERS, Signature, geometric_inliers, signature
from .ledger import Ledger
from .records import Record

__all__ = ["PdqIndex", "PdqMatch", "KeypointIndex", "KeypointMatch"]

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
        if self._size >= ledger.size():  # the usual case: nothing to read
            return 0
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

    def position(self, record_id: str) -> int | None:
        """The log position of ``record_id`` if the index has it (newest records first)."""
        for i in range(len(self._ids) - 1, -1, -1):
            if self._ids[i] == record_id:
                return self._size - len(self._ids) + i
        return None

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


_KEYPOINT_SCHEMA = """
CREATE TABLE IF NOT EXISTS keypoints (
    leaf_index INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL,
    aspect REAL NOT NULL,
    points BLOB NOT NULL,
    descriptors BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class KeypointMatch:
    record_id: str
    inliers: int


class KeypointIndex:
    """ORB signatures of registered images (:mod:`blockimage.keypoints`), to find crops.

    Derived data like the PDQ index: :meth:`sync` computes the signatures of records it has not
    seen, from the stored images. Search matches the query's descriptors against all stored
    ones at once (brute-force Hamming, Lowe's ratio test), votes per record, and confirms the
    best few with a RANSAC similarity transform. The scan is linear in the number of records
    (about 16 KB of descriptors each); an approximate index replaces it when that matters.
    """

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_KEYPOINT_SCHEMA)
        self._signatures: dict[str, Signature] = {}
        self._seen: set[int] = set()
        for index, record_id, aspect, points, descriptors in self._db.execute(
            "SELECT leaf_index, record_id, aspect, points, descriptors FROM keypoints"
        ):
            self._signatures[record_id] = _signature_from_rows(aspect, points, descriptors)
            self._seen.add(index)
        self._pool: tuple[np.ndarray, np.ndarray, list[str]] | None = None

    def close(self) -> None:
        self._db.close()

    def add(self, leaf_index: int, record_id: str, sig: Signature) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO keypoints VALUES (?, ?, ?, ?, ?)",
            (
                leaf_index,
                record_id,
                sig.aspect,
                sig.points.astype(np.float32).tobytes(),
                sig.descriptors.astype(np.uint8).tobytes(),
            ),
        )
        self._signatures[record_id] = sig
        self._seen.add(leaf_index)
        self._pool = None

    def sync(self, ledger: Ledger, image_of: Callable[[Record], np.ndarray | None]) -> int:
        """Add signatures for records not indexed yet; ``image_of`` fetches a record's pixels."""
        if len(self._seen) >= ledger.size():  # every leaf has its signature: nothing to parse
            return 0
        added = 0
        for index, record in ledger.records():
            if index in self._seen:
                continue
            pixels = image_of(record)
            if pixels is not None:
                self.add(index, record.record_id, signature(pixels))
                added += 1
        return added

    def search(self, query: Signature, *, top: int = 3) -> list[KeypointMatch]:
        """Records whose images share a geometrically consistent set of keypoints with ``query``."""
        if len(query.descriptors) < MIN_INLIERS or not self._signatures:
            return []
        if self._pool is None:
            ids = list(self._signatures)
            descriptors = np.concatenate([self._signatures[i].descriptors for i in ids])
            owner = np.concatenate(
                [np.full(len(self._signatures[i].descriptors), n) for n, i in enumerate(ids)]
            )
            offsets = np.concatenate([np.arange(len(self._signatures[i].descriptors)) for i in ids])
            self._pool = (descriptors, np.stack([owner, offsets], axis=1), ids)
        descriptors, where, ids = self._pool
        if len(descriptors) < 2:
            return []
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query.descriptors, descriptors, k=2)
        good = [
            (m[0].queryIdx, m[0].trainIdx)
            for m in pairs
            if len(m) == 2 and m[0].distance < 0.8 * m[1].distance
        ]
        votes: dict[int, list[tuple[int, int]]] = {}
        for q, t in good:
            votes.setdefault(int(where[t, 0]), []).append((q, int(where[t, 1])))
        ranked = sorted(votes.items(), key=lambda kv: -len(kv[1]))[:top]
        found = []
        for position, matched in ranked:
            sig = self._signatures[ids[position]]
            inliers = geometric_inliers(query, sig, np.array(matched))
            if inliers >= MIN_INLIERS:
                found.append(KeypointMatch(ids[position], inliers))
        return sorted(found, key=lambda m: -m.inliers)


def _signature_from_rows(aspect: float, points: bytes, descriptors: bytes) -> Signature:
    return Signature(
        np.frombuffer(points, np.float32).reshape(-1, 2),
        np.frombuffer(descriptors, np.uint8).reshape(-1, 32),
        float(aspect),
    )
