"""Fuzz targets: the parsers that take bytes from outside, and what each may raise.

Each target takes arbitrary bytes and must either succeed or raise one of its allowed errors
(all :class:`~blockimage.errors.BlockImageError`\\ s): anything else would be a traceback for a
user. The same targets run under hypothesis in the test suite (``tests/test_fuzz.py``) and
under atheris, coverage-guided, in ``scripts/fuzz``. Seeds are real files made from the sample
photos the project ships with.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from blockimage.analysis.jpeg import aligned_double_jpeg
from blockimage.bundle import InvalidBundleError, make_bundle, verify_bundle
from blockimage.config import ConfigError, load_settings
from blockimage.imaging import InvalidImageError, jpeg_luma
from blockimage.inputs import load_image
from blockimage.ledger.checkpoint import (
    Checkpoint,
    InvalidCheckpointError,
    open_checkpoint,
    sign_checkpoint,
)
from blockimage.ledger.log import MerkleLog
from blockimage.ledger.proofs import log_origin
from blockimage.records import Receipt, RecordFormatError
from blockimage.storage.local import LocalBlockstore

__all__ = ["TARGETS", "Target"]

_LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_ORIGIN = log_origin(_LOG_KEY.public_key().public_bytes_raw())


@dataclass(frozen=True)
class Target:
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]


def _photo(size: int = 96) -> np.ndarray:
    import skimage.data

    path = Path(skimage.data.__file__).parent / "coffee.png"
    return np.asarray(Image.open(path).convert("RGB").resize((size, size * 2 // 3)))


def _encoded(fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(_photo()).save(out, fmt, **kwargs)
    return out.getvalue()


@cache
def _image_seeds() -> list[bytes]:
    rgba = np.dstack([_photo(), np.full(_photo().shape[:2], 128, np.uint8)])
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, "PNG")
    return [
        _encoded("PNG"),
        _encoded("JPEG", quality=80),
        _encoded("WEBP", lossless=True),
        _encoded("TIFF", compression="tiff_deflate"),
        out.getvalue(),
    ]


def _load(data: bytes) -> object:
    return load_image(data, max_pixels=4_000_000, max_file_bytes=1 << 22)


def _jpeg_history(data: bytes) -> object:
    """A file's JPEG luma and table (the blind forensics' reading of the file's own bytes), and
    the double-compression analysis of whatever they hold."""
    luma = jpeg_luma(data, max_pixels=4_000_000)
    return None if luma is None else aligned_double_jpeg(luma)


@cache
def _bundle_seeds() -> list[bytes]:
    """An evidence bundle and a receipt, made by the project's own code."""
    import hashlib

    from tests.test_ledger_contract import OWNER, fresh

    with tempfile.TemporaryDirectory() as tmp:
        store = LocalBlockstore(Path(tmp) / "blocks", fsync=False)
        data = _image_seeds()[1]
        cid = store.put(data)
        record = fresh(OWNER, cid=cid, sha256_file=hashlib.sha256(data).hexdigest())
        log = MerkleLog(Path(tmp) / "ledger.db", _LOG_KEY, origin=_ORIGIN)
        proof = log.append(record)
        log.close()
        bundle = make_bundle(
            proof,
            store.export_car(cid),
            origin=_ORIGIN,
            log_public_key=_LOG_KEY.public_key().public_bytes_raw(),
        )
    return [bundle, json.dumps(Receipt(record, proof).to_dict()).encode()]


def _receipt(data: bytes) -> object:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None  # not JSON: the JSON parser's business, not ours
    return Receipt.from_dict(doc)


@cache
def _checkpoint_seeds() -> list[bytes]:
    note = sign_checkpoint(Checkpoint(_ORIGIN, 7, bytes(32)), _LOG_KEY, name=_ORIGIN)
    return [note.encode()]


def _checkpoint(data: bytes) -> object:
    text = data.decode("utf-8", errors="replace")
    return open_checkpoint(text, _LOG_KEY.public_key().public_bytes_raw(), name=_ORIGIN)


def _config_seeds() -> list[bytes]:
    from blockimage.config import DEFAULT_CONFIG

    return [DEFAULT_CONFIG.encode(), b'[storage]\nbackend = "kubo"\n[limits]\nmax_pixels = 5\n']


def _config(data: bytes) -> object:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.toml").write_bytes(data)
        return load_settings(Path(tmp), environ={})


@cache
def _credentials_seeds() -> list[bytes]:
    """A small JPEG with our Content Credentials signed into it (a fresh signer)."""
    from blockimage.credentials import make_identity, record_manifest, sign

    plain = _encoded("JPEG", quality=80)
    manifest = record_manifest(
        record_id="0123456789abcdef", title="seed.jpg", owner="fuzz", log_origin=_ORIGIN,
        parent=None,
    )  # fmt: skip
    identity = make_identity()
    return [sign(plain, "image/jpeg", manifest, identity, submitted=(plain, "image/jpeg", "s"))]


def _credentials(data: bytes) -> object:
    from blockimage.credentials import read

    found = read(data, "image/jpeg")  # never raises: a bad manifest is "invalid" evidence
    assert found is None or found["state"] in ("trusted", "valid", "invalid"), found
    return found


def _manifest_store(data: bytes) -> object:
    """The container walk that serves GET /manifests/{id}: bytes or None, never an error."""
    from blockimage.credentials import manifest_store

    found = manifest_store(data)
    assert found is None or (found[4:8] == b"jumb" and len(found) <= len(data)), found[:16]
    return found


@cache
def _store_seeds() -> list[bytes]:
    """Our manifest in a JPEG (several APP11 segments: a thumbnail and a long title), a PNG
    and a WebP."""
    from blockimage.credentials import make_identity, record_manifest, sign

    identity = make_identity()
    seeds = []
    for fmt, media_type in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        plain = _encoded(fmt, quality=80) if fmt == "JPEG" else _encoded(fmt)
        manifest = record_manifest(
            record_id="0123456789abcdef", title="t" * 30_000, owner="fuzz",
            log_origin=_ORIGIN, parent=None,
        )  # fmt: skip
        seeds.append(sign(plain, media_type, manifest, identity, submitted=(plain, media_type,
                          "s"), thumbnail=fmt == "JPEG"))  # fmt: skip
    return seeds


TARGETS: dict[str, Target] = {
    "credentials": Target(_credentials, (), _credentials_seeds),
    "manifest_store": Target(_manifest_store, (), _store_seeds),
    "image": Target(_load, (InvalidImageError,), _image_seeds),
    "jpeg_history": Target(_jpeg_history, (InvalidImageError,), _image_seeds),
    "bundle": Target(verify_bundle, (InvalidBundleError,), lambda: _bundle_seeds()[:1]),
    "receipt": Target(_receipt, (RecordFormatError,), lambda: _bundle_seeds()[1:]),
    "checkpoint": Target(_checkpoint, (InvalidCheckpointError,), _checkpoint_seeds),
    "config": Target(_config, (ConfigError,), _config_seeds),
}
