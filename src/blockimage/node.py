"""The composition root: opens a node's home and runs the register and verify flows.

Node owns no algorithm; each step calls one function of the pure modules (imaging, fingerprint,
watermark, analysis) or one backend method (storage, ledger, index), in the order of
DESIGN.md. All disk and network I/O of the product happens here or in the backends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import watermark
from .analysis import ModelNotFoundError
from .analysis.classifier import DEFAULT_MODEL, classify
from .bundle import make_bundle
from .config import DEFAULT_CONFIG, Settings, load_settings, resolve_home
from .files import stage_file, write_atomic
from .fingerprint import (
    PDQ_MIN_QUALITY,
    Fingerprint,
    file_sha256,
    fingerprint,
)
from .imaging import DecodedImage, InvalidImageError, decode_image, encode_image
from .index import KeypointIndex, PdqIndex
from .keypoints import signature
from .keys import KeyStore, check_owner_name
from .ledger import AuditFailure, AuditReport, Ledger, RecordNotFoundError
from .ledger.log import MerkleLog
from .quality import normalized_correlation, psnr, ssim
from .records import (
    LogProof,
    Receipt,
    Record,
    Verdict,
    WatermarkMetrics,
    new_record_id,
    sign_record,
)
from .storage import ContentNotFoundError, Storage, StorageError
from .storage.kubo import KuboStorage
from .storage.local import LocalBlockstore
from .verification import Evidence, Verifier

__all__ = [
    "Node",
    "Evidence",
    "ImageSource",
    "DuplicateContentError",
    "BackendUnavailableError",
    "WatermarkNotRecoverableError",
]

# Registered files: JPEG inputs stay JPEG (quality 95, 4:4:4 chroma), everything else is PNG.
_JPEG_QUALITY = 95

ImageSource = str | os.PathLike[str] | bytes | np.ndarray


class DuplicateContentError(ValueError):
    """The content is already registered; a second 'original' is refused."""


class BackendUnavailableError(RuntimeError):
    """The configured backend is not available in this build or not reachable."""


class WatermarkNotRecoverableError(ValueError):
    """The watermark did not survive saving the registered file (nothing was registered)."""


@dataclass(frozen=True)
class _Marked:
    """The registered file: bytes, decoded pixels, format, and how well the mark came out."""

    data: bytes
    image: DecodedImage
    metrics: WatermarkMetrics


@dataclass(frozen=True)
class _Input:
    """An image to register or verify: its bytes, decoded pixels, and where it came from."""

    data: bytes | None  # None for an array input
    image: DecodedImage
    path: Path | None


class Node:
    """A BlockImage node rooted at ``home`` (see CONTRACT.md: Home).

    >>> node = Node("/tmp/bi-home")            # doctest: +SKIP
    >>> receipt = node.register("photo.jpg", owner="alice")   # doctest: +SKIP
    >>> node.verify(receipt.output).verdict    # doctest: +SKIP
    'authentic'
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home = resolve_home(home)
        created = not (self.home / "config.toml").exists()
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if created:
            write_atomic(self.home / "config.toml", DEFAULT_CONFIG.encode())
        self.settings: Settings = load_settings(self.home)
        self.keys = KeyStore(self.home / "keys")
        node_key = self.keys.node_key()
        self.node_public_key = node_key.public_key().public_bytes_raw().hex()
        self.ledger_origin = f"blockimage/{self.node_public_key[:16]}"
        self.keys.api_token()  # created at init, read by `serve`
        self.storage: Storage = self._open_storage()
        self.ledger: Ledger = self._open_ledger(node_key)
        self.index = PdqIndex(self.home / "index.db")
        self.index.sync(self.ledger)
        self.keypoints = KeypointIndex(self.home / "index.db")
        self.keypoints.sync(self.ledger, self._stored_pixels)
        self.tag_model = self._tag_model()
        self.verifier = Verifier(
            self.ledger,
            self.storage,
            self.index,
            self.keys.watermark_key(),
            max_pixels=self.settings.max_pixels,
            tag_model=self.tag_model,
            keypoints=self.keypoints,
        )

    def close(self) -> None:
        for part in (self.index, self.keypoints, self.ledger, self.storage):
            close = getattr(part, "close", None)
            if close:
                close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- backends ---------------------------------------------------------------------------------
    def _open_storage(self) -> Storage:
        if self.settings.storage == "local":
            return LocalBlockstore(self.home / "blocks")
        if self.settings.storage == "kubo":
            return KuboStorage(self.settings.kubo_api)
        raise BackendUnavailableError(
            f"storage backend {self.settings.storage!r} is not available in this version"
        )

    def _open_ledger(self, node_key: Ed25519PrivateKey) -> Ledger:
        if self.settings.ledger == "merkle":
            return MerkleLog(self.home / "ledger.db", node_key, origin=self.ledger_origin)
        if self.settings.ledger == "fabric":
            try:
                from .ledger.fabric import FabricLedger, FabricSettings
            except ImportError as exc:
                raise BackendUnavailableError(
                    f"the Fabric ledger needs its client libraries ({exc.name}): "
                    "pip install 'blockimage[fabric]'"
                ) from None
            return FabricLedger(FabricSettings.from_mapping(self.settings.fabric))
        raise BackendUnavailableError(
            f"ledger backend {self.settings.ledger!r} is not available in this version"
        )

    def _stored_pixels(self, record: Record) -> np.ndarray | None:
        """The registered image of ``record`` if the store holds it (for derived indexes)."""
        try:
            if not self.storage.has(record.cid):
                return None
            return decode_image(
                self.storage.get(record.cid), max_pixels=self.settings.max_pixels
            ).pixels
        except (StorageError, InvalidImageError):
            return None

    def _tag_model(self) -> Path:
        if self.settings.backbone == "efficientnet-lite0":
            return DEFAULT_MODEL
        path = self.home / "models" / f"{self.settings.backbone}.onnx"
        if not path.is_file():
            raise ModelNotFoundError(
                f"backbone {self.settings.backbone} is configured but {path} is missing: "
                f"run `blockimage models import {self.settings.backbone} WEIGHTS.pth`"
            )
        return path

    # -- register ---------------------------------------------------------------------------------
    def register(
        self,
        source: ImageSource,
        *,
        owner: str,
        parent: str | None = None,
        out: str | os.PathLike[str] | None = None,
    ) -> Receipt:
        """Register an image: the five steps of DESIGN.md, returning the signed receipt.

        ``out`` is a directory for the registered (watermarked) file; by default it is written
        next to the input as ``NAME.bi.EXT``. For array or bytes input nothing is written
        unless ``out`` is given. Raises :class:`InvalidImageError`,
        :class:`DuplicateContentError`, :class:`RecordNotFoundError` (bad ``parent``) before
        anything is written.
        """
        check_owner_name(owner)
        item = self._read(source)
        if parent is not None:
            self.ledger.get(parent)  # raises RecordNotFoundError
        data = item.data if item.data is not None else encode_image(item.image.pixels, "PNG")
        original = fingerprint(data, item.image.pixels)
        self._refuse_duplicate(original, item.image.pixels, owner=owner, parent=parent)
        record_id = self._fresh_record_id()

        # 1. watermark
        marked = self._embed_watermark(item, record_id)
        registered_bytes = marked.data
        registered_pixels = marked.image.pixels
        # 2. analyse: content tags of the submitted picture
        tags = classify(item.image.pixels, self.tag_model)
        # 3. fingerprint the file that is registered
        fp = fingerprint(registered_bytes, registered_pixels)

        output_path = self._output_path(item, marked.image.format, out)
        staged = stage_file(output_path, registered_bytes) if output_path else None
        try:
            # 4. store
            cid = self.storage.put(registered_bytes)
            # 5. record
            owner_key = self.keys.owner_key(owner)
            record = Record(
                record_id=record_id,
                owner=owner,
                owner_key=owner_key.public_key().public_bytes_raw().hex(),
                created_at=_now_rfc3339(),
                sha256_file=fp.sha256_file,
                sha256_pixels=fp.sha256_pixels,
                original_sha256_file=original.sha256_file,
                pdq=fp.pdq,
                pdq_quality=fp.pdq_quality,
                cid=cid,
                width=int(registered_pixels.shape[1]),
                height=int(registered_pixels.shape[0]),
                media_type=marked.image.media_type,
                tags=tags,
                watermark=marked.metrics,
                parent=parent,
            )
            log = self.ledger.append(sign_record(record, owner_key))
        except BaseException:
            if staged:
                staged.unlink(missing_ok=True)
            raise
        if staged and output_path:
            os.replace(staged, output_path)
        self.index.sync(self.ledger)
        # On Fabric the log position is the commit order, which the PDQ index has just read.
        position = log.leaf_index if isinstance(log, LogProof) else self.index.position(record_id)
        if position is not None:
            self.keypoints.add(position, record_id, signature(registered_pixels))
        return Receipt(
            record=Record.from_leaf(log.leaf),
            log=log,
            output=str(output_path) if output_path else None,
        )

    def _embed_watermark(self, item: _Input, record_id: str) -> _Marked:
        """Embed the record id, save in the output format, and check the mark in the saved file."""
        key = self.keys.watermark_key()
        payload = int(record_id, 16)
        pixels = watermark.embed(item.image.pixels, payload, key)
        fmt = "JPEG" if item.image.format == "JPEG" else "PNG"
        data = encode_image(pixels, fmt, quality=_JPEG_QUALITY)
        saved = decode_image(data, max_pixels=self.settings.max_pixels)
        found = watermark.extract_details(saved.pixels, key)
        if found.payload != payload or found.bits is None:
            raise WatermarkNotRecoverableError(
                "the watermark could not be read back from the saved image; nothing was "
                "registered (is the image almost uniform?)"
            )
        metrics = WatermarkMetrics(
            psnr=round(psnr(item.image.pixels, saved.pixels), 2),
            ssim=round(ssim(item.image.pixels, saved.pixels), 4),
            nc=round(normalized_correlation(watermark.coded_bits(payload, key), found.bits), 4),
        )
        return _Marked(data, saved, metrics)

    def _refuse_duplicate(
        self, fp: Fingerprint, pixels: np.ndarray, *, owner: str, parent: str | None
    ) -> None:
        for digest in (fp.sha256_file, fp.sha256_pixels):
            for existing in self.ledger.find_by_sha256(digest):
                raise DuplicateContentError(
                    f"this image is already registered as record {existing.record_id} "
                    f"(owner {existing.owner}, {existing.created_at}); the registered file is "
                    f"`blockimage get {existing.cid} -o FILE`"
                )
        if parent is not None:
            return
        marked_by, _ = self.verifier.marked_record(pixels)
        if marked_by is not None:
            raise DuplicateContentError(
                f"this image carries the watermark of registered record {marked_by.record_id} "
                f"(owner {marked_by.owner}); register it as a derivative with "
                f"--parent {marked_by.record_id}"
            )
        if fp.pdq_quality < PDQ_MIN_QUALITY:
            return
        matches = self.index.nearest(fp.pdq)
        if matches:
            existing = self.ledger.get(matches[0].record_id)
            raise DuplicateContentError(
                f"this image matches registered record {existing.record_id} "
                f"(owner {existing.owner}, PDQ distance {matches[0].distance}); "
                f"register it as a derivative with --parent {existing.record_id}"
            )

    def _fresh_record_id(self) -> str:
        while True:
            record_id = new_record_id()
            try:
                self.ledger.get(record_id)
            except RecordNotFoundError:
                return record_id

    def _output_path(
        self, item: _Input, fmt: str, out: str | os.PathLike[str] | None
    ) -> Path | None:
        ext = {"JPEG": ".jpg", "PNG": ".png"}[fmt]
        if out is not None:
            directory = Path(out)
            directory.mkdir(parents=True, exist_ok=True)
            stem = item.path.stem if item.path else "image"
            return directory / f"{stem}.bi{ext}"
        if item.path is None:
            return None
        return item.path.with_name(f"{item.path.stem}.bi{ext}")

    # -- verify -----------------------------------------------------------------------------------
    def verify(self, source: ImageSource) -> Verdict:
        """Find the registered record an image comes from and judge it (CONTRACT.md: Verdict)."""
        return self.verify_detailed(source).verdict

    def verify_detailed(self, source: ImageSource) -> Evidence:
        """:meth:`verify`, plus the images behind the verdict (for reports)."""
        item = self._read(source)
        return self.verifier.verify(item.data, item.image.pixels)

    # -- other commands ---------------------------------------------------------------------------
    def history(self, record_id: str) -> list[Record]:
        return self.ledger.history(record_id)

    def get(self, cid: str) -> bytes:
        return self.storage.get(cid)

    def export_bundle(self, record_id: str) -> bytes:
        """A CAR evidence bundle for ``record_id`` (see :mod:`blockimage.bundle`)."""
        record = self.ledger.get(record_id)
        proof = self.ledger.proof(record_id)
        if not isinstance(proof, LogProof):
            raise BackendUnavailableError(
                "evidence bundles carry a Merkle log proof and need the embedded ledger; on "
                "Fabric, the receipt's ledger proof (channel, transaction id, block number) is "
                "the evidence, to check on the channel"
            )
        return make_bundle(
            proof,
            self.storage.export_car(record.cid),
            origin=self.ledger_origin,
            log_public_key=bytes.fromhex(self.node_public_key),
        )

    def audit(self) -> AuditReport:
        """Re-verify the ledger, then that every record's CID is stored and hashes right."""
        report = self.ledger.audit()
        cids = 0
        for index, record in self.ledger.records():
            try:
                data = self.storage.get(record.cid)
            except (ContentNotFoundError, StorageError) as exc:
                raise AuditFailure(f"leaf {index} (record {record.record_id}): {exc}") from None
            got = file_sha256(data)
            if got != record.sha256_file:
                raise AuditFailure(
                    f"leaf {index} (record {record.record_id}): content of {record.cid} has "
                    f"SHA-256 {got}, the record says {record.sha256_file}"
                )
            cids += 1
        return AuditReport(
            tree_size=report.tree_size,
            root_hash=report.root_hash,
            checkpoints_checked=report.checkpoints_checked,
            records_checked=report.records_checked,
            cids_checked=cids,
        )

    # -- input ------------------------------------------------------------------------------------
    def _read(self, source: ImageSource) -> _Input:
        if isinstance(source, np.ndarray):
            # An array has no file: register encodes it as PNG when it needs the original's
            # hash; verify skips the file-hash lookup.
            pixels = _as_rgb(source)
            if pixels.shape[0] * pixels.shape[1] > self.settings.max_pixels:
                raise InvalidImageError(f"array too large: {pixels.shape[1]}x{pixels.shape[0]}")
            return _Input(None, DecodedImage(pixels, "PNG", lossless=True), None)
        if isinstance(source, bytes | bytearray):
            data = bytes(source)
            self._check_size(len(data), "input")
            return _Input(data, decode_image(data, max_pixels=self.settings.max_pixels), None)
        path = Path(source)
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise InvalidImageError(f"{path}: not a regular file")
            self._check_size(size, str(path))
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidImageError(f"{path}: no such file") from None
        except PermissionError:
            raise InvalidImageError(f"{path}: permission denied") from None
        except IsADirectoryError:
            raise InvalidImageError(f"{path}: is a directory") from None
        try:
            image = decode_image(data, max_pixels=self.settings.max_pixels)
        except InvalidImageError as exc:
            raise InvalidImageError(f"{path}: {exc}") from None
        return _Input(data, image, path)

    def _check_size(self, size: int, what: str) -> None:
        if size > self.settings.max_file_bytes:
            raise InvalidImageError(
                f"{what}: file too large ({size:,} bytes, limit {self.settings.max_file_bytes:,})"
            )


def _as_rgb(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise InvalidImageError(f"array must be uint8, not {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InvalidImageError(f"array must be H x W, H x W x 3 or H x W x 4, not {array.shape}")
    return np.ascontiguousarray(array[:, :, :3])


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
