"""The register flow (docs/ARCHITECTURE.md): watermark, analyse, fingerprint, store, record.

:class:`Registrar` takes a loaded image (:func:`blockimage.inputs.load_image`) and an owner and
returns the signed receipt. Before anything is written it refuses a second "original" of a
registered picture: the matchers (:mod:`blockimage.matchers`) are asked for exact or confident
matches, and a derivative must name its parent. The check runs again inside the ledger's
append (under the Merkle log's write lock), so concurrent registrations of one picture give one
original; the ledger itself refuses reused content hashes. The registered file is staged beside
its final path and renamed into place only after the ledger has committed the record, so a
failure or a crash at any step leaves no record and no output.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import watermark
from .analysis.classifier import DEFAULT_MODEL, classify, load_classifier
from .credentials import (
    READ_FORMATS,
    SIGNED_FORMATS,
    CredentialsError,
    SigningIdentity,
    record_manifest,
)
from .credentials import sign as sign_credentials
from .errors import (
    BlockImageError,
    DuplicateContentError,
    OutputNotWrittenError,
    WatermarkNotRecoverableError,
)
from .files import place_new, remove_stale_staging, stage_file
from .fingerprint import (
    PDQ_MIN_QUALITY,
    Fingerprint,
    file_sha256,
    pdq_hash,
    pixel_sha256,
)
from .imaging import (
    WORK_SIDE,
    DecodedImage,
    decode_image,
    encode_image,
    same_image_data,
    work_image,
)
from .inputs import LoadedImage
from .keys import KeyFileError, KeyStore, check_owner_name
from .ledger import Ledger, RecordNotFoundError
from .matchers import Matcher, Strength, Suspect
from .quality import normalized_correlation, psnr, ssim
from .records import Receipt, Record, WatermarkMetrics, new_record_id, sign_record
from .storage import Storage

__all__ = ["Registrar"]

# Registered files: JPEG inputs stay JPEG (quality 95, 4:4:4 chroma), everything else is PNG.
_JPEG_QUALITY = 95
# The long side at which the watermark's SSIM is measured: the working resolution, whose copies
# of the submitted and the registered picture the duplicate check and the matchers make anyway.
SSIM_SIDE = WORK_SIDE


@dataclass(frozen=True)
class _Marked:
    """The registered file: bytes, decoded pixels (and their work image), format, and how well
    the mark came out."""

    data: bytes
    image: DecodedImage
    work: np.ndarray
    metrics: WatermarkMetrics


class Registrar:
    """Registration over a node's ledger, storage, keys and matchers."""

    def __init__(
        self,
        ledger: Ledger,
        storage: Storage,
        keys: KeyStore,
        matchers: Sequence[Matcher],
        *,
        max_pixels: int,
        tag_model: Path = DEFAULT_MODEL,
        log_origin: str = "",
        c2pa_identity: SigningIdentity | None = None,
    ) -> None:
        self.ledger = ledger
        self.storage = storage
        self.keys = keys
        self.matchers = list(matchers)
        self._max_pixels = max_pixels
        self._tag_model = tag_model
        self._log_origin = log_origin
        self._c2pa_identity = c2pa_identity  # None: made or read from ``keys`` when needed

    def register(
        self,
        item: LoadedImage,
        *,
        owner: str,
        parent: str | None = None,
        out: str | os.PathLike[str] | None = None,
        c2pa: bool = True,
        thumbnail: bool = False,
    ) -> Receipt:
        """Register a loaded image as ``owner``'s; see :meth:`blockimage.Node.register`."""
        check_owner_name(owner)
        if not self.ledger.shared and not self.keys.has_owner_key(owner):
            self._refuse_second_identity(owner)
        parent_record = self.ledger.get(parent) if parent is not None else None  # or not found
        pixels = item.image.pixels
        data = item.data if item.data is not None else encode_image(pixels, "PNG")
        key = self.keys.watermark_key()
        # the duplicate check reads a mark as is: a crop of a registered picture is not searched
        # for (the synchronisation search would double a 1 MP registration's time)
        submitted = Suspect(data, pixels, watermark_key=key, sync=False)
        original_sha256 = submitted.sha256_file
        assert original_sha256 is not None  # the suspect has file bytes: ``data`` above
        self._refuse_duplicate(submitted, parent=parent)
        record_id = self._fresh_record_id()

        # 1. watermark (and, in the same file, our Content Credentials)
        marked = self._embed_watermark(submitted, item.image.format, record_id)
        pdq, pdq_quality = pdq_hash(marked.work)
        if c2pa and marked.image.format in SIGNED_FORMATS:
            title = item.path.name if item.path is not None else record_id
            source = (data, READ_FORMATS[item.image.format], title)
            pdq_binding = pdq if pdq_quality >= PDQ_MIN_QUALITY else None  # else not indexed
            marked = self._sign_credentials(
                marked, record_id, source, owner, parent_record, pdq_binding, thumbnail=thumbnail
            )
        registered = Suspect(
            marked.data, marked.image.pixels, watermark_key=key, sync=False, work=marked.work
        )
        # 2. analyse: content tags (of the registered picture: the mark changes no content, and
        # the backbone's run is then shared with the keypoint matcher's embedding)
        if self._tag_model == DEFAULT_MODEL:
            tags = load_classifier().tags(registered.prediction)
        else:
            tags = classify(marked.work, self._tag_model)
        # 3. fingerprint the file that is registered (PDQ of its pixels, taken before signing:
        # the manifest names it as a soft binding)
        fp = Fingerprint(
            file_sha256(marked.data), pixel_sha256(marked.image.pixels), pdq, pdq_quality
        )

        output_path = _output_path(item.path, marked.image.format, out)
        staged = None
        if output_path is not None:
            remove_stale_staging(output_path.parent)  # what a killed registration left
            staged = stage_file(output_path, marked.data)
        try:
            # 4. store
            cid = self.storage.put(marked.data)
            # 5. record
            owner_key = self.keys.owner_key(owner)
            record = Record(
                record_id=record_id,
                owner=owner,
                owner_key=owner_key.public_key().public_bytes_raw().hex(),
                created_at=_now_rfc3339(),
                sha256_file=fp.sha256_file,
                sha256_pixels=fp.sha256_pixels,
                original_sha256_file=original_sha256,
                pdq=fp.pdq,
                pdq_quality=fp.pdq_quality,
                cid=cid,
                width=int(marked.image.pixels.shape[1]),
                height=int(marked.image.pixels.shape[0]),
                media_type=marked.image.media_type,
                tags=tags,
                watermark=marked.metrics,
                parent=parent,
            )
            # The duplicate check again, atomically with the append: another process may have
            # registered the same picture while this one was watermarking it.
            log = self.ledger.append(
                sign_record(record, owner_key),
                check=lambda: self._refuse_duplicate(submitted, parent=parent),
            )
        except BaseException:
            if staged:
                staged.unlink(missing_ok=True)
            raise
        committed = Record.from_leaf(log.leaf)
        written = None
        if staged is not None and output_path is not None:
            try:
                written = place_new(staged, output_path)  # never over another file
            except OSError as exc:
                staged.unlink(missing_ok=True)
                raise OutputNotWrittenError(
                    f"record {committed.record_id} is registered, but the registered file could "
                    f"not be written to {output_path.parent} ({exc.strerror or exc}); fetch it "
                    f"with `blockimage get {committed.cid} -o FILE`"
                ) from None
        for matcher in self.matchers:
            # Derived indexes follow the ledger: one that cannot be updated now catches up at
            # its next use, so its failure does not undo a committed registration.
            with suppress(OSError, sqlite3.Error, BlockImageError):
                matcher.registered(committed, registered)
        return Receipt(record=committed, log=log, output=str(written) if written else None)

    def _refuse_duplicate(self, submitted: Suspect, *, parent: str | None) -> None:
        """Refuse content that is registered already: an exact copy always, a confident match
        (watermark, PDQ) unless the image is registered as a derivative of ``parent``."""
        at_least = Strength.EXACT if parent is not None else Strength.MATCH
        for matcher in self.matchers:
            for found in matcher.candidates(submitted, at_least=at_least):
                existing = found.record
                if found.strength == Strength.EXACT:
                    raise DuplicateContentError(
                        f"this image is already registered as record {existing.record_id} "
                        f"(owner {existing.owner}, {existing.created_at}); the registered file "
                        f"is `blockimage get {existing.cid} -o FILE`"
                    )
                if found.strength >= at_least:
                    raise DuplicateContentError(
                        f"this image matches registered record {existing.record_id} (owner "
                        f"{existing.owner}: {found.evidence}); register it as a derivative with "
                        f"--parent {existing.record_id}"
                    )

    def _refuse_second_identity(self, owner: str) -> None:
        """A first registration for ``owner`` in this home makes its key; if this home's own
        ledger already has records of that owner, their key was lost (the manifest that would
        say so went with it), and a new one would be a second identity under the same name."""
        earlier = self.ledger.by_owner(owner)
        if earlier:
            raise KeyFileError(
                f"owner {owner} has {len(earlier)} record(s) on the ledger signed with key "
                f"{earlier[0].owner_key[:16]}…, but this home has no key for {owner}: restore "
                "the keys/ folder from your backup (README: Backing up a home), or register "
                "under another owner name"
            )

    def _embed_watermark(self, submitted: Suspect, source_format: str, record_id: str) -> _Marked:
        """Embed the record id, save in the output format, and check the mark in the saved file.
        ``submitted`` is the image as the duplicate check saw it (its work image and canonical
        luma are reused); ``source_format`` its file's format."""
        key = self.keys.watermark_key()
        payload = int(record_id, 16)
        pixels = watermark.embed(submitted.pixels, payload, key, canonical=submitted.canonical)
        fmt = source_format if source_format in ("JPEG", "WEBP") else "PNG"  # WebP: lossless
        data = encode_image(pixels, fmt, quality=_JPEG_QUALITY)
        saved = decode_image(data, max_pixels=self._max_pixels)
        found = watermark.extract_details(saved.pixels, key, sync=False)
        if found.payload != payload or found.bits is None:
            raise WatermarkNotRecoverableError(
                "the watermark could not be read back from the saved image; nothing was "
                "registered (is the image almost uniform?)"
            )
        saved_work = work_image(saved.pixels)  # at SSIM_SIDE, as submitted.work
        metrics = WatermarkMetrics(
            psnr=round(psnr(submitted.pixels, saved.pixels), 2),
            # SSIM at a bounded size: at 20 MP it took 6 s and 1 GB at full size.
            ssim=round(ssim(submitted.work, saved_work), 4),
            nc=round(normalized_correlation(watermark.coded_bits(payload, key), found.bits), 4),
            ssim_side=max(saved_work.shape[:2]),
        )
        return _Marked(data, saved, saved_work, metrics)

    def _sign_credentials(
        self,
        marked: _Marked,
        record_id: str,
        source: tuple[bytes, str, str],
        owner: str,
        parent: Record | None,
        pdq: str | None,
        *,
        thumbnail: bool,
    ) -> _Marked:
        """The registered file with our C2PA manifest signed into it; its pixels are checked
        to be the ones the watermark was read back from. A derivative's manifest carries its
        ``parent`` record's registered file as an ingredient (and so the parent's manifest)."""
        parent_file = None
        if parent is not None:
            title = f"registered parent: record {parent.record_id}"
            parent_file = (self.storage.get(parent.cid), parent.media_type, title)
        manifest = record_manifest(
            record_id=record_id, title=source[2], owner=owner, log_origin=self._log_origin,
            parent=parent.record_id if parent is not None else None, pdq=pdq,
        )  # fmt: skip
        media_type = SIGNED_FORMATS[marked.image.format]
        identity = self._c2pa_identity or self.keys.c2pa_identity()
        signed = sign_credentials(
            marked.data, media_type, manifest, identity, submitted=source, parent=parent_file,
            thumbnail=thumbnail,
        )  # fmt: skip
        if same_image_data(marked.data, signed, marked.image.format):
            return replace(marked, data=signed)  # the same coded image: the same pixels
        image = decode_image(signed, max_pixels=self._max_pixels)
        if not np.array_equal(image.pixels, marked.image.pixels):
            raise CredentialsError("signing the Content Credentials changed the pixels")
        return replace(marked, data=signed, image=image)

    def _fresh_record_id(self) -> str:
        while True:
            record_id = new_record_id()
            try:
                self.ledger.get(record_id)
            except RecordNotFoundError:
                return record_id


def _output_path(source: Path | None, fmt: str, out: str | os.PathLike[str] | None) -> Path | None:
    """Where the registered file goes: ``out/NAME.bi.EXT``, else beside the input; None for an
    input without a path and no ``out``."""
    ext = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}[fmt]
    if out is not None:
        return Path(out) / f"{source.stem if source else 'image'}.bi{ext}"
    if source is None:
        return None
    return source.with_name(f"{source.stem}.bi{ext}")


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
