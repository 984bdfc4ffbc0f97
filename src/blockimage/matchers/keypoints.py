"""Local-feature matches: ORB signatures of registered images, to find crops and rotations.

The watermark and PDQ both describe the whole frame; a copy cropped by more than a few percent,
or rotated, escapes them. Each registered image's keypoint signature
(:func:`blockimage.keypoints.signature`) is kept in ``index.db``. A search matches the suspect's
descriptors against all stored ones at once (brute-force Hamming, Lowe's ratio test), votes per
record, and confirms the best few with a RANSAC similarity transform. Every result is only a
candidate: the pixel comparison must confirm it.

Derived data like the PDQ index: when opened, the index computes the signatures of records it
has not looked at yet from their stored images, and remembers how far into the ledger it has
looked, so records whose images live elsewhere are looked at once, not at every start. The scan
is linear in the number of records (about 16 KB of descriptors each).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imaging import InvalidImageError, decode_image
from ..keypoints import MIN_INLIERS, Signature, geometric_inliers, ratio_matches, signature
from ..ledger import Ledger
from ..records import Record
from ..storage import StorageError
from . import Candidate, Matcher, Strength, Suspect, open_index_db

__all__ = ["KeypointIndex", "KeypointMatch", "KeypointMatcher"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keypoint_signatures (
    record_id TEXT PRIMARY KEY,
    aspect REAL NOT NULL,
    points BLOB NOT NULL,
    descriptors BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS index_progress (
    name TEXT PRIMARY KEY,
    leaves INTEGER NOT NULL
);
"""
_PROGRESS = "keypoints"


@dataclass(frozen=True)
class KeypointMatch:
    record_id: str
    inliers: int


class KeypointIndex:
    """Signatures by record id, in ``index.db``; loaded into memory on the first search."""

    def __init__(self, path: Path) -> None:
        self._db = open_index_db(path, _SCHEMA)
        self._migrate()
        self._signatures: dict[str, Signature] | None = None
        self._pool: tuple[np.ndarray, np.ndarray, list[str]] | None = None

    def _migrate(self) -> None:
        """Version 0.1 keyed the rows by leaf index, in a table named ``keypoints``."""
        old = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='keypoints'"
        ).fetchone()
        if old:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR IGNORE INTO keypoint_signatures "
                "SELECT record_id, aspect, points, descriptors FROM keypoints"
            )
            self._db.execute("DROP TABLE keypoints")
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def _loaded(self) -> dict[str, Signature]:
        if self._signatures is None:
            self._signatures = {
                record_id: _signature_from_row(aspect, points, descriptors)
                for record_id, aspect, points, descriptors in self._db.execute(
                    "SELECT record_id, aspect, points, descriptors FROM keypoint_signatures"
                )
            }
        return self._signatures

    def add(self, record_id: str, sig: Signature) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO keypoint_signatures VALUES (?, ?, ?, ?)",
            (
                record_id,
                sig.aspect,
                sig.points.astype(np.float32).tobytes(),
                sig.descriptors.astype(np.uint8).tobytes(),
            ),
        )
        if self._signatures is not None:
            self._signatures[record_id] = sig
            self._pool = None

    def sync(self, ledger: Ledger, image_of: Callable[[Record], np.ndarray | None]) -> int:
        """Add signatures for records not looked at yet; ``image_of`` fetches a record's pixels
        (None when the store does not hold it). Returns how many were added."""
        row = self._db.execute(
            "SELECT leaves FROM index_progress WHERE name=?", (_PROGRESS,)
        ).fetchone()
        start = row[0] if row else 0
        if start >= ledger.size():  # the usual case: nothing to read
            return 0
        known = self._loaded()
        added = 0
        end = start
        for index, record in ledger.records(start):
            end = index + 1
            if record.record_id in known:
                continue
            pixels = image_of(record)
            if pixels is not None:
                self.add(record.record_id, signature(pixels))
                added += 1
        self._db.execute("INSERT OR REPLACE INTO index_progress VALUES (?, ?)", (_PROGRESS, end))
        return added

    def search(self, query: Signature, *, top: int = 3) -> list[KeypointMatch]:
        """Records whose images share a geometrically consistent set of keypoints with ``query``."""
        signatures = self._loaded()
        if len(query.descriptors) < MIN_INLIERS or not signatures:
            return []
        if self._pool is None:
            ids = list(signatures)
            descriptors = np.concatenate([signatures[i].descriptors for i in ids])
            owner = np.concatenate(
                [np.full(len(signatures[i].descriptors), n) for n, i in enumerate(ids)]
            )
            offsets = np.concatenate([np.arange(len(signatures[i].descriptors)) for i in ids])
            self._pool = (descriptors, np.stack([owner, offsets], axis=1), ids)
        descriptors, where, ids = self._pool
        votes: dict[int, list[tuple[int, int]]] = {}
        for q, t in ratio_matches(query.descriptors, descriptors):
            votes.setdefault(int(where[t, 0]), []).append((int(q), int(where[t, 1])))
        ranked = sorted(votes.items(), key=lambda kv: -len(kv[1]))[:top]
        found = []
        for position, matched in ranked:
            sig = signatures[ids[position]]
            inliers = geometric_inliers(query, sig, np.array(matched))
            if inliers >= MIN_INLIERS:
                found.append(KeypointMatch(ids[position], inliers))
        return sorted(found, key=lambda m: -m.inliers)


def _signature_from_row(aspect: float, points: bytes, descriptors: bytes) -> Signature:
    return Signature(
        np.frombuffer(points, np.float32).reshape(-1, 2),
        np.frombuffer(descriptors, np.uint8).reshape(-1, 32),
        float(aspect),
    )


class KeypointMatcher(Matcher):
    name = "keypoints"
    order = 40

    _index: KeypointIndex | None = None
    _synced = False

    def _opened(self) -> KeypointIndex:
        if self._index is None:
            self._index = KeypointIndex(self.parts.index_path)
        return self._index

    def index(self) -> KeypointIndex:
        """The index, brought up to date with the ledger on first use."""
        index = self._opened()
        if not self._synced:
            index.sync(self.parts.ledger, self._stored_pixels)
            self._synced = True
        return index

    def candidates(
        self, suspect: Suspect, *, at_least: Strength = Strength.CANDIDATE
    ) -> Iterator[Candidate]:
        if at_least > Strength.CANDIDATE:
            return
        for match in self.index().search(suspect.keypoints):
            record = self.parts.ledger.get(match.record_id)
            yield Candidate(
                record,
                "keypoints",
                Strength.CANDIDATE,
                f"{match.inliers} of its local features match the record's image",
                explanation=(
                    f"{match.inliers} local features (ORB keypoints) match the registered "
                    "image under one similarity transform: a crop, rotation or rescale."
                ),
            )

    def registered(self, record: Record, pixels: np.ndarray) -> None:
        # Written now, even if the index is not loaded in this process: computing it later would
        # mean fetching and decoding the stored image again.
        self._opened().add(record.record_id, signature(pixels))

    def _stored_pixels(self, record: Record) -> np.ndarray | None:
        """The registered image of ``record`` if the store holds it."""
        storage = self.parts.storage
        try:
            if not storage.has(record.cid):
                return None
            return decode_image(storage.get(record.cid), max_pixels=self.parts.max_pixels).pixels
        except (StorageError, InvalidImageError):
            return None

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index, self._synced = None, False
