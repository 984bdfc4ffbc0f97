"""C2PA soft-binding resolution: from a soft binding, or an image, to our manifests.

C2PA's Soft Binding Resolution API (served by ``blockimage serve``: ``/matches/byBinding``,
``/matches/byContent``, ``/manifests/{manifestId}``, ``/services/supportedAlgorithms``) lets
any C2PA tool recover the manifest of a file whose metadata was stripped: it reads a soft
binding (our watermark, or a PDQ fingerprint) from the pixels, asks for the manifests bound to
it, and fetches them. This module answers those questions from the node's ledger and storage:

- every registration signed with Content Credentials carries our manifest, whose id encodes its
  record id (:func:`blockimage.credentials.manifest_label`), so a manifest id names its record
  without an index;
- ``org.blockimage.watermark.1``: the 8-byte record id the watermark carries (a decoded mark is
  BCH-corrected and CRC-checked: it names one record, similarity 100);
- ``org.blockimage.pdq.1``: the 32-byte PDQ hash; records within Meta's match threshold (31 of
  256 bits), similarity ``100 * (1 - distance / 256)``.

A match is only answered for a record whose signature checks and whose stored file (re-hashed
against its CID by the storage) holds our manifest: a record registered without credentials
has no manifest to recover.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .credentials import FINGERPRINT_ALG, SOFT_BINDING_ALG, manifest_label, manifest_store
from .credentials import record_of_manifest as _record_of_manifest
from .errors import BlockImageError, InvalidInputError
from .fingerprint import PDQ_MATCH_THRESHOLD, PDQ_MIN_QUALITY
from .inputs import LoadedImage
from .ledger import Ledger, RecordNotFoundError
from .matchers import Matcher, Suspect
from .matchers.pdq import PdqMatcher
from .records import Record, verify_record_signature
from .storage import Storage

__all__ = ["ALGORITHMS", "ManifestMatch", "ManifestNotFoundError", "Resolver"]

# The algorithms we resolve, by kind (the shape of GET /services/supportedAlgorithms).
ALGORITHMS = {"watermarks": [SOFT_BINDING_ALG], "fingerprints": [FINGERPRINT_ALG]}
_VALUE_BYTES = {SOFT_BINDING_ALG: 8, FINGERPRINT_ALG: 32}
MAX_RESULTS = 100


class ManifestNotFoundError(BlockImageError, LookupError):
    """No manifest of ours has that id (or its record's file carries none)."""


@dataclass(frozen=True)
class ManifestMatch:
    manifest_id: str
    record_id: str
    similarity: int  # 0-100, as the API's similarityScore

    def to_dict(self) -> dict[str, object]:
        return {"manifestId": self.manifest_id, "similarityScore": self.similarity}


class Resolver:
    """Soft bindings and images to manifest ids, manifest ids to manifest stores."""

    def __init__(
        self, ledger: Ledger, storage: Storage, matchers: Sequence[Matcher], watermark_key: bytes
    ) -> None:
        self.ledger = ledger
        self.storage = storage
        self._pdq = next((m for m in matchers if isinstance(m, PdqMatcher)), None)
        self._watermark_key = watermark_key

    def by_binding(self, alg: str, value: str, max_results: int = 10) -> list[ManifestMatch]:
        """The manifests bound to a soft binding ``value`` (base64, as C2PA writes it)."""
        raw = _decode(alg, value)
        if alg == SOFT_BINDING_ALG:
            return self._matches([(f"{int.from_bytes(raw, 'big'):016x}", 100)], max_results)
        return self._matches(self._near(raw.hex()), max_results)

    def by_content(
        self, item: LoadedImage, alg: str | None = None, max_results: int = 10
    ) -> list[ManifestMatch]:
        """The manifests whose soft bindings the image carries: the watermark read from its
        pixels, its PDQ hash, or (``alg`` None) both, best first."""
        if alg is not None:
            _check_alg(alg)
        suspect = Suspect(item.data, item.image.pixels, watermark_key=self._watermark_key)
        found: list[tuple[str, int]] = []
        if alg in (None, SOFT_BINDING_ALG) and suspect.mark.payload is not None:
            found.append((f"{suspect.mark.payload:016x}", 100))
        if alg in (None, FINGERPRINT_ALG):
            pdq, quality = suspect.pdq
            if quality >= PDQ_MIN_QUALITY:
                found.extend(self._near(pdq))
        return self._matches(found, max_results)

    def manifest(self, manifest_id: str) -> bytes:
        """Our manifest store (``application/c2pa``) with ``manifest_id`` as its active
        manifest, read from the record's stored file."""
        record_id = _record_of_manifest(manifest_id)
        store = self._store(record_id) if record_id is not None else None
        if store is None:
            raise ManifestNotFoundError(f"no manifest {manifest_id} is registered here")
        return store

    # -- internals --------------------------------------------------------------------------
    def _near(self, pdq: str) -> list[tuple[str, int]]:
        if self._pdq is None:
            return []
        return [
            (record.record_id, round(100 * (1 - distance / 256)))
            for record, distance in self._pdq.nearest(pdq, PDQ_MATCH_THRESHOLD, k=MAX_RESULTS)
        ]

    def _matches(self, found: Iterable[tuple[str, int]], max_results: int) -> list[ManifestMatch]:
        best: dict[str, int] = {}
        for record_id, score in found:
            best[record_id] = max(score, best.get(record_id, 0))
        matches: list[ManifestMatch] = []
        for record_id, score in sorted(best.items(), key=lambda kv: -kv[1]):
            if len(matches) >= max_results:
                break
            if self._store(record_id) is not None:
                matches.append(ManifestMatch(manifest_label(record_id), record_id, score))
        return matches

    def _store(self, record_id: str) -> bytes | None:
        """The manifest store in the record's stored file if it holds our manifest for it."""
        try:
            record: Record = self.ledger.get(record_id)
        except RecordNotFoundError:
            return None
        verify_record_signature(record)  # a record that fails its signature: fail closed
        store = manifest_store(self.storage.get(record.cid))
        if store is None or manifest_label(record_id).encode("ascii") not in store:
            return None
        return store


def _check_alg(alg: str) -> None:
    if alg not in _VALUE_BYTES:
        raise InvalidInputError(
            f"soft binding algorithm {alg!r} is not resolved here; supported: "
            f"{', '.join(_VALUE_BYTES)}"
        )


def _decode(alg: str, value: str) -> bytes:
    _check_alg(alg)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError("the soft binding value is not base64") from None
    if len(raw) != _VALUE_BYTES[alg]:
        raise InvalidInputError(
            f"a {alg} value is {_VALUE_BYTES[alg]} bytes (base64), not {len(raw)}"
        )
    return raw
