"""Local-feature matches: crops and rotations, shortlisted by a global embedding, confirmed by
keypoints.

The watermark and PDQ both describe the whole frame; a copy cropped by more than a few percent,
or rotated, escapes them. For such a suspect this matcher asks the global embedding
(:mod:`blockimage.analysis.embedding`) for a shortlist: the 512 registered images whose sketches
are nearest in Hamming distance (FAISS, exact) are re-ranked by the cosine of their vectors, and
the best 8 have their keypoint signatures (:func:`blockimage.keypoints.signature`) read from
``index.db`` and matched with the suspect's (ratio test, RANSAC similarity transform). Those
with enough inliers are candidates, most inliers first; the pixel comparison must confirm them.
No query touches more than 8 stored signatures, whatever the number of records.

Derived data, like the PDQ index: a table ``visual_signatures`` (record id -> keypoint signature
and embedding) and the column files ``visual.sketch``, ``visual.vector``, ``visual.record`` in
ledger order (:mod:`._columns`). A registration writes its record's signature; a sync appends
the rows of new ledger leaves, computing a signature from the stored image when a record has
none (registered by another node) and passing over records whose image this node's store does
not hold. How far it has looked is remembered, so nothing is scanned twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from ..analysis.embedding import (
    EMBEDDING_VERSION,
    SKETCH_BYTES,
    VECTOR_DIMS,
    Embedding,
    image_embedding,
)
from ..imaging import InvalidImageError, decode_image
from ..keypoints import MIN_INLIERS, Signature, geometric_inliers, ratio_matches, signature
from ..ledger import Ledger, RecordNotFoundError
from ..records import Record
from ..storage import StorageError
from . import Candidate, Matcher, Strength, Suspect, open_index_db
from ._columns import ColumnFiles, IndexDamagedError, faiss

__all__ = ["VisualIndex", "KeypointMatcher"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS visual_signatures (
    record_id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    aspect REAL NOT NULL,
    points BLOB NOT NULL,
    descriptors BLOB NOT NULL,
    sketch BLOB NOT NULL,
    vector BLOB NOT NULL
);
"""
_VERSION = f"{EMBEDDING_VERSION}+orb500"
_COARSE = 512  # sketches read by Hamming distance, then re-ranked by cosine
_SHORTLIST = 8  # signatures matched per query (the original ranks first in benchmarks/scale.py)
_TOP = 3  # candidates handed to the pixel comparison
_BATCH = 256  # ledger leaves per append while catching up

Visual = tuple[Signature, Embedding]


class VisualIndex:
    """Keypoint signatures and embeddings of registered images, searched by embedding."""

    def __init__(self, index_dir: Path) -> None:
        self._db = open_index_db(index_dir, _SCHEMA)
        # Earlier layouts kept signatures alone (0.1: by leaf index); they are rebuilt.
        self._db.execute("DROP TABLE IF EXISTS keypoints")
        self._db.execute("DROP TABLE IF EXISTS keypoint_signatures")
        self._files = ColumnFiles(
            self._db,
            index_dir,
            "visual",
            {
                "sketch": (np.uint8, SKETCH_BYTES),
                "vector": (np.float16, VECTOR_DIMS),
                "record": (np.uint64, 1),
            },
            version=_VERSION,
        )

    def close(self) -> None:
        self._db.close()

    # -- per-record signatures --------------------------------------------------------------------
    def put(self, record_id: str, sig: Signature, emb: Embedding) -> None:
        self.put_many([(record_id, sig, emb)])

    def put_many(self, rows: Iterable[tuple[str, Signature, Embedding]]) -> None:
        """Store signatures (one transaction): a registration's, or a bulk import's."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO visual_signatures VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        record_id,
                        _VERSION,
                        sig.aspect,
                        sig.points.astype(np.float32).tobytes(),
                        sig.descriptors.astype(np.uint8).tobytes(),
                        emb.sketch.astype(np.uint8).tobytes(),
                        emb.vector.astype(np.float16).tobytes(),
                    )
                    for record_id, sig, emb in rows
                ),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def signature(self, record_id: str) -> Signature | None:
        row = self._db.execute(
            "SELECT aspect, points, descriptors FROM visual_signatures "
            "WHERE record_id=? AND version=?",
            (record_id, _VERSION),
        ).fetchone()
        if row is None:
            return None
        return Signature(
            np.frombuffer(row[1], np.float32).reshape(-1, 2),
            np.frombuffer(row[2], np.uint8).reshape(-1, 32),
            float(row[0]),
        )

    def _embedding_row(self, record_id: str) -> tuple[bytes, bytes] | None:
        row = self._db.execute(
            "SELECT sketch, vector FROM visual_signatures WHERE record_id=? AND version=?",
            (record_id, _VERSION),
        ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def state(self) -> tuple[int, int]:
        """(ledger leaves looked at, rows indexed)."""
        return self._files.state()

    # -- following the ledger ---------------------------------------------------------------------
    def sync(
        self,
        ledger: Ledger,
        compute: Callable[[Record], Visual | None],
        progress: Callable[[str], None] | None = None,
    ) -> int:
        """Append the rows of ledger leaves not looked at yet; ``compute`` gives the signature
        of a record that has none (None when its image is not available). Returns rows added."""
        added = 0
        while True:
            start, _ = self._files.state()
            size = ledger.size()
            if start >= size:
                return added
            batch = list(islice(ledger.records(start), _BATCH))
            if not batch:
                return added
            sketches, vectors, ids = [], [], []
            for _, record in batch:
                row = self._embedding_row(record.record_id)
                if row is None:
                    computed = compute(record)
                    if computed is None:
                        continue  # the image lives elsewhere: looked at, passed over
                    self.put(record.record_id, *computed)
                    row = self._embedding_row(record.record_id)
                    assert row is not None
                sketches.append(row[0])
                vectors.append(row[1])
                ids.append(int(record.record_id, 16))
            rows: dict[str, np.ndarray] = {
                "sketch": np.frombuffer(b"".join(sketches), np.uint8).reshape(-1, SKETCH_BYTES),
                "vector": np.frombuffer(b"".join(vectors), np.float16).reshape(-1, VECTOR_DIMS),
                "record": np.array(ids, dtype=np.uint64),
            }
            end = batch[-1][0] + 1
            if self._files.append(start, end, rows):
                added += len(ids)
                if progress is not None and size - start > _BATCH:
                    progress(f"keypoint index: {end:,} of {size:,} records")

    def rebuild(
        self,
        ledger: Ledger,
        compute: Callable[[Record], Visual | None],
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self._files.reset()
        self.sync(ledger, compute, progress)

    # -- search -----------------------------------------------------------------------------------
    def nearest(self, emb: Embedding, *, shortlist: int = _SHORTLIST) -> list[str]:
        """Record ids of the registered images whose embeddings are closest, best first."""
        columns = self._files.view()
        sketches = columns["sketch"]
        if len(sketches) == 0:
            return []
        _, rows = faiss().knn_hamming(
            emb.sketch.reshape(1, SKETCH_BYTES), sketches, min(_COARSE, len(sketches))
        )
        found = rows[0][rows[0] >= 0]
        cosine = columns["vector"][found].astype(np.float32) @ emb.vector
        best = found[np.argsort(-cosine, kind="stable")[:shortlist]]
        return [f"{int(columns['record'][row, 0]):016x}" for row in best]


class KeypointMatcher(Matcher):
    name = "keypoints"
    order = 40

    _index: VisualIndex | None = None
    _synced = False

    def _opened(self) -> VisualIndex:
        if self._index is None:
            self._index = VisualIndex(self.parts.index_dir)
        return self._index

    def index(self) -> VisualIndex:
        """The index, brought up to date with the ledger on first use."""
        index = self._opened()
        if not self._synced:
            index.sync(self.parts.ledger, self._stored_visual, self.parts.progress)
            self._synced = True
        return index

    def candidates(
        self, suspect: Suspect, *, at_least: Strength = Strength.CANDIDATE
    ) -> Iterator[Candidate]:
        if at_least > Strength.CANDIDATE:
            return
        query = suspect.keypoints
        if len(query.descriptors) < MIN_INLIERS:
            return
        found = []
        for record_id in self._shortlist(suspect):
            sig = self.index().signature(record_id)
            if sig is None:
                continue
            inliers = geometric_inliers(
                query, sig, ratio_matches(query.descriptors, sig.descriptors)
            )
            if inliers >= MIN_INLIERS:
                found.append((inliers, record_id))
        for inliers, record_id in sorted(found, key=lambda f: -f[0])[:_TOP]:
            try:
                record = self.parts.ledger.get(record_id)
            except RecordNotFoundError:
                continue  # a damaged index proposes nothing the ledger does not hold
            yield Candidate(
                record,
                "keypoints",
                Strength.CANDIDATE,
                f"{inliers} of its local features match the record's image",
                explanation=(
                    f"{inliers} local features (ORB keypoints) match the registered "
                    "image under one similarity transform: a crop, rotation or rescale."
                ),
            )

    def _shortlist(self, suspect: Suspect) -> list[str]:
        try:
            return self.index().nearest(suspect.embedding)
        except IndexDamagedError:
            self.parts.progress("keypoint index damaged: rebuilding it from the ledger")
            self.index().rebuild(self.parts.ledger, self._stored_visual, self.parts.progress)
            return self.index().nearest(suspect.embedding)

    def registered(self, record: Record, image: Suspect) -> None:
        # Written now, even if the index is not open for search in this process: computing it
        # later would mean fetching and decoding the stored image again.
        self._opened().put(record.record_id, image.keypoints, image.embedding)

    def _stored_visual(self, record: Record) -> Visual | None:
        """The signature and embedding of ``record``'s image if this node's store holds it."""
        storage = self.parts.storage
        try:
            if not storage.has(record.cid):
                return None
            pixels = decode_image(storage.get(record.cid), max_pixels=self.parts.max_pixels).pixels
        except (StorageError, InvalidImageError):
            return None
        return signature(pixels), image_embedding(pixels)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index, self._synced = None, False
