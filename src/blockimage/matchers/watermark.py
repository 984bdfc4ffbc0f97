"""Watermark matches: the keyed watermark in the suspect carries a registered record's id.

The payload is protected by BCH and a CRC (:mod:`blockimage.watermark`), so a decoded id names
its record on its own; the comparison with the stored original then says benign or tampered.
The mark is read once per suspect (:attr:`Suspect.mark`) and reused for the verdict's figures.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..ledger import RecordNotFoundError
from . import Candidate, Matcher, Strength, Suspect

__all__ = ["WatermarkMatcher"]


class WatermarkMatcher(Matcher):
    name = "watermark"
    order = 20

    def candidates(
        self, suspect: Suspect, *, at_least: Strength = Strength.CANDIDATE
    ) -> Iterator[Candidate]:
        if at_least > Strength.MATCH:
            return
        mark = suspect.mark
        if mark.payload is None:
            return
        try:
            record = self.parts.ledger.get(f"{mark.payload:016x}")
        except RecordNotFoundError:
            return  # marked by another node, or its record is not on this ledger
        yield Candidate(
            record,
            "watermark",
            Strength.MATCH,
            "it carries the record's watermark",
            explanation=(
                f"The invisible watermark decodes to record {record.record_id} "
                f"({mark.bits_ok:.0%} of the coded bits intact before error correction)."
            ),
        )
