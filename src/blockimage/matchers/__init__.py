"""Matchers: the ways a suspect image finds the registered record it may come from.

Each matcher is one module of this package holding one :class:`Matcher` subclass (in the manner
of python-threatexchange's ``SignalType``): it proposes :class:`Candidate` records for a
:class:`Suspect`, each with a :class:`Strength` that says what the pixels still have to show:

- ``EXACT``: the suspect *is* the registered file or pixels (authentic, nothing to compare);
- ``MATCH``: the evidence names the record on its own (a decoded watermark, a PDQ distance
  within Meta's threshold); the comparison with the stored original decides benign / tampered;
- ``CANDIDATE``: a proposal only (a loose PDQ distance, local features); the comparison must
  confirm that it is the same picture, else the candidate is rejected.

The verify flow (:class:`blockimage.verification.Verifier`) runs the matchers in ``order``
(cheapest and strongest first) and stops at the first candidate that holds. The register flow
(:class:`blockimage.registration.Registrar`) asks the same matchers for ``MATCH`` or ``EXACT``
candidates to refuse a second "original" of a registered picture.

Adding a matcher is one new module here: :func:`load_matchers` finds every :class:`Matcher`
subclass defined in this package (its name also goes into :data:`blockimage.records.MatchedBy`,
the list of evidence names the JSON documents may carry). A matcher that keeps a derived index
(PDQ, keypoints) opens it on first use, rebuilds what is missing from the ledger, and is told of
each new registration through :meth:`Matcher.registered`.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..fingerprint import file_sha256, pdq_hash, pixel_sha256
from ..ledger import Ledger
from ..records import MatchedBy, Record, Similarity
from ..storage import Storage

if TYPE_CHECKING:  # OpenCV, ONNX Runtime and PyWavelets load on first use (the light CLI
    # commands, `audit` among them, check the PDQ index without them)
    from ..analysis.classifier import Prediction
    from ..analysis.embedding import Embedding
    from ..keypoints import Signature
    from ..watermark import Extraction

__all__ = [
    "Candidate",
    "Matcher",
    "MatcherParts",
    "Strength",
    "Suspect",
    "load_matchers",
    "no_progress",
    "open_index_db",
]


class Strength(enum.IntEnum):
    """How much a candidate proves by itself (see the module docstring)."""

    CANDIDATE = 1
    MATCH = 2
    EXACT = 3


@dataclass(frozen=True)
class Candidate:
    """A registered record that the suspect may come from, and why."""

    record: Record
    matched_by: MatchedBy
    strength: Strength
    evidence: str  # why, as a clause: "it carries the record's watermark"
    explanation: str | None = None  # the verdict's sentence for this evidence, if it has one
    rejection: str | None = None  # the sentence for an unknown verdict if the pixels reject it
    similarity: Similarity = Similarity()  # what an EXACT candidate measured


class Suspect:
    """The image under test and what is derived from it, each computed at most once.

    ``data`` is the file's bytes (None for an array input); ``pixels`` its RGB uint8 pixels.
    ``sync``: when the watermark is not read as is, search for it in a crop or a rotation
    (0.2-0.5 s more; verification does, registration's duplicate check does not). ``work``:
    the pixels' work image (:func:`blockimage.imaging.work_image`) if the caller has it; PDQ,
    the keypoints and the backbone all look at it, so it is made once.
    """

    def __init__(
        self,
        data: bytes | None,
        pixels: np.ndarray,
        *,
        watermark_key: bytes,
        sync: bool = True,
        work: np.ndarray | None = None,
    ) -> None:
        self.data = data
        self.pixels = pixels
        self._watermark_key = watermark_key
        self._sync = sync
        if work is not None:
            self.__dict__["work"] = work  # the cached property's value

    @cached_property
    def work(self) -> np.ndarray:
        """The pixels at the working resolution."""
        from ..imaging import work_image

        return work_image(self.pixels)

    @cached_property
    def sha256_file(self) -> str | None:
        return file_sha256(self.data) if self.data is not None else None

    @cached_property
    def sha256_pixels(self) -> str:
        return pixel_sha256(self.pixels)

    @cached_property
    def pdq(self) -> tuple[str, int]:
        """(PDQ hash in hex, quality 0-100)."""
        return pdq_hash(self.work)

    @cached_property
    def canonical(self) -> np.ndarray:
        """The luma on the watermark's canonical grid (:func:`blockimage.watermark.canonical_luma`:
        the reading starts from it, and registration embeds from it)."""
        from ..watermark import canonical_luma

        return canonical_luma(self.pixels)

    @cached_property
    def mark(self) -> Extraction:
        """The keyed watermark read from the pixels (payload None if there is none)."""
        from ..watermark import extract_details

        key = self._watermark_key
        return extract_details(self.pixels, key, sync=self._sync, canonical=self.canonical)

    @cached_property
    def keypoints(self) -> Signature:
        from ..keypoints import signature

        return signature(self.work)

    @cached_property
    def prediction(self) -> Prediction:
        """The default backbone's output: content tags and the embedding both come from this
        one run."""
        from ..analysis.classifier import load_classifier

        return load_classifier().predict(self.work)

    @cached_property
    def embedding(self) -> Embedding:
        """The global embedding (:mod:`blockimage.analysis.embedding`)."""
        from ..analysis.embedding import embed_features

        return embed_features(self.prediction.features)

    def marked_with(self, record_id: str) -> bool:
        """Whether the suspect's watermark carries ``record_id``."""
        return self.mark.payload is not None and f"{self.mark.payload:016x}" == record_id


def no_progress(message: str) -> None:
    """The default progress sink: says nothing."""


@dataclass(frozen=True)
class MatcherParts:
    """What a matcher may use: the node's backends, its derived-index folder and its limits."""

    ledger: Ledger
    storage: Storage
    index_dir: Path  # derived indexes: index.db and column files (``index/`` in the home)
    max_pixels: int
    progress: Callable[[str], None] = field(default=no_progress)  # a line on a long rebuild


class Matcher(ABC):
    """One way of finding registered records for a suspect; subclass it in a new module."""

    name: ClassVar[str]
    order: ClassVar[int]  # position in the cascade: cheaper and more certain evidence first

    def __init__(self, parts: MatcherParts) -> None:
        self.parts = parts

    @abstractmethod
    def candidates(
        self, suspect: Suspect, *, at_least: Strength = Strength.CANDIDATE
    ) -> Iterator[Candidate]:
        """Records the suspect may come from, best first, each at least ``at_least`` strong.

        A generator: the verifier stops reading as soon as a candidate holds, so later (and
        costlier) work is never done.
        """

    def explain_miss(self, suspect: Suspect) -> str | None:
        """A sentence for an unknown verdict when this matcher could not look (else None)."""
        return None

    def registered(self, record: Record, image: Suspect) -> None:  # noqa: B027
        """Called after ``record`` is on the ledger; ``image`` is its registered image."""

    def close(self) -> None:  # noqa: B027
        """Release what the matcher opened."""


def open_index_db(index_dir: Path, schema: str = "") -> sqlite3.Connection:
    """A connection to ``index_dir/index.db`` (autocommit, WAL, waits for writers), with
    ``schema`` (``CREATE ... IF NOT EXISTS`` statements) applied."""
    index_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _connect(index_dir / "index.db", schema)
    except sqlite3.DatabaseError:
        # Derived data that cannot be read is started over; the ledger rebuilds it.
        for path in index_dir.iterdir():
            if path.is_file():
                path.unlink()
        return _connect(index_dir / "index.db", schema)


def _connect(path: Path, schema: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=60.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # Derived data: a power cut may lose the last commits, which are rebuilt from the ledger.
        db.execute("PRAGMA synchronous=NORMAL")
        if schema:
            db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


def load_matchers(parts: MatcherParts) -> list[Matcher]:
    """One instance of every matcher in this package, in cascade order."""
    found: dict[str, type[Matcher]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, Matcher)
                and cls.__module__ == module.__name__
                and not inspect.isabstract(cls)
            ):
                if cls.name in found:
                    raise TypeError(f"two matchers are named {cls.name!r}")
                found[cls.name] = cls
    return [cls(parts) for cls in sorted(found.values(), key=lambda c: c.order)]
