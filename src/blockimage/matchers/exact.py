"""Exact matches: the suspect's file or decoded pixels hash to what a record holds.

SHA-256 of the file's bytes is looked up first (the registered file, or the file as it was
submitted before watermarking), then SHA-256 of the decoded RGB pixels (a lossless re-save or a
metadata edit keeps them). The ledger's own hash index answers both; nothing else is opened.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..records import Similarity
from . import Candidate, Matcher, Strength, Suspect

__all__ = ["ExactHashMatcher"]


class ExactHashMatcher(Matcher):
    name = "exact"
    order = 10

    def candidates(
        self, suspect: Suspect, *, at_least: Strength = Strength.CANDIDATE
    ) -> Iterator[Candidate]:
        ledger = self.parts.ledger
        digest = suspect.sha256_file
        for record in ledger.find_by_sha256(digest) if digest else []:
            if record.sha256_file == digest:
                yield Candidate(
                    record,
                    "sha256_file",
                    Strength.EXACT,
                    "its file SHA-256 is the registered file's",
                    explanation=(
                        "The file's SHA-256 equals that of the registered file: same bytes."
                    ),
                    similarity=Similarity(pdq_distance=0),
                )
            elif record.original_sha256_file == digest:
                yield Candidate(
                    record,
                    "original_sha256_file",
                    Strength.EXACT,
                    "its file SHA-256 is that of the file submitted for registration",
                    explanation=(
                        "The file's SHA-256 equals that of the file submitted for registration "
                        "(before watermarking)."
                    ),
                )
        digest = suspect.sha256_pixels
        for record in ledger.find_by_sha256(digest):
            if record.sha256_pixels == digest:
                yield Candidate(
                    record,
                    "sha256_pixels",
                    Strength.EXACT,
                    "its decoded pixels are the registered image's",
                    explanation=(
                        "The decoded pixels are identical to the registered image's "
                        "(the file was re-saved losslessly or its metadata changed)."
                    ),
                    similarity=Similarity(pdq_distance=0),
                )
