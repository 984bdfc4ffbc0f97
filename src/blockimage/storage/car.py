"""CARv1 (Content Addressable aRchive) files: https://ipld.io/specs/transport/car/carv1/.

A CAR is a varint-prefixed dag-cbor header ``{"roots": [CID, ...], "version": 1}`` followed by
sections, each ``varint(len(CID) + len(block)) || CID || block``. :func:`read_car` checks every
block against its CID (sha2-256) as it reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dag_cbor
from multiformats import CID

from ..errors import BlockImageError
from .unixfs import InvalidBlockError, _read_varint, _varint, check_block, cid_text

__all__ = ["Car", "write_car", "read_car", "InvalidCarError"]


class InvalidCarError(BlockImageError, ValueError):
    """The file is not a well-formed CARv1, or a block does not match its CID."""


@dataclass(frozen=True)
class Car:
    roots: tuple[bytes, ...]  # binary CIDs
    blocks: dict[bytes, bytes]  # binary CID -> block bytes, in file order


def write_car(roots: Iterable[bytes], blocks: Iterable[tuple[bytes, bytes]]) -> bytes:
    header = dag_cbor.encode({"roots": [CID.decode(r) for r in roots], "version": 1})
    out = bytearray(_varint(len(header)) + header)
    seen: set[bytes] = set()
    for cid, data in blocks:
        if cid in seen:
            continue
        seen.add(cid)
        out += _varint(len(cid) + len(data)) + cid + data
    return bytes(out)


def read_car(data: bytes) -> Car:
    try:
        length, pos = _read_varint(data, 0)
        header = dag_cbor.decode(data[pos : pos + length])
    except (InvalidBlockError, Exception) as exc:
        raise InvalidCarError(f"not a CAR file: bad header ({exc})") from None
    if not isinstance(header, dict) or header.get("version") != 1:
        raise InvalidCarError("not a CARv1 file (header version is not 1)")
    listed = header.get("roots")
    if not isinstance(listed, list) or not all(isinstance(r, CID) for r in listed):
        raise InvalidCarError("CAR header has no list of root CIDs")
    roots = tuple(bytes(r) for r in listed if isinstance(r, CID))
    pos += length
    blocks: dict[bytes, bytes] = {}
    while pos < len(data):
        try:
            size, pos = _read_varint(data, pos)
        except InvalidBlockError as exc:
            raise InvalidCarError(f"truncated CAR section: {exc}") from None
        section = data[pos : pos + size]
        if len(section) != size:
            raise InvalidCarError("truncated CAR section")
        pos += size
        cid_len = _cid_length(section)
        cid, block = section[:cid_len], section[cid_len:]
        try:
            check_block(cid, block)
        except InvalidBlockError as exc:
            raise InvalidCarError(str(exc)) from None
        blocks[cid] = block
    return Car(roots, blocks)


def _cid_length(section: bytes) -> int:
    """Length of the binary CIDv1 at the start of a section (version, codec, multihash)."""
    pos = 0
    for _ in range(3):  # version, codec, hash function
        _, pos = _read_varint(section, pos)
    digest_len, pos = _read_varint(section, pos)
    if section[0] != 1:
        raise InvalidCarError(f"unsupported CID version in CAR section ({cid_text(section[:8])})")
    return pos + digest_len
