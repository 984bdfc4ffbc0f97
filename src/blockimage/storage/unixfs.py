"""UnixFS file import and decoding, byte-compatible with ``ipfs add --cid-version=1 --raw-leaves``.

Specs followed:
- UnixFS (https://specs.ipfs.tech/unixfs/): a file is a DAG whose leaves hold the data and whose
  inner nodes are dag-pb nodes carrying a UnixFS ``Data`` message (Type=File, filesize,
  blocksizes).
- dag-pb (https://ipld.io/specs/codecs/dag-pb/spec/): PBNode = Links (field 2) then Data
  (field 1); PBLink = Hash (1), Name (2), Tsize (3). Links are written with an empty Name, as
  Kubo and the JS importer do.
- Kubo's defaults for this profile: fixed 256 KiB chunks, raw leaves (codec 0x55), balanced
  layout with at most 174 links per node, sha2-256, CIDv1 in base32. A file of one chunk is the
  raw leaf itself.

The balanced layout is built bottom-up while streaming: each level holds at most 174 pending
children, and a full level is closed into a parent the moment another child arrives. This gives
the same tree as go-unixfs' top-down ``balanced.Layout`` and the JS importer's reducer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from multiformats import CID, multihash

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINKS",
    "Block",
    "ImportResult",
    "InvalidBlockError",
    "import_bytes",
    "import_chunks",
    "chunk_bytes",
    "cid_for_bytes",
    "block_cid",
    "check_block",
    "decode_file_node",
    "FileNode",
    "parse_cid",
]

CHUNK_SIZE = 262_144
MAX_LINKS = 174

_RAW = "raw"
_DAG_PB = "dag-pb"
_UNIXFS_FILE = 2


class InvalidBlockError(ValueError):
    """A block's bytes do not hash to its CID, or do not decode as UnixFS/dag-pb."""


@dataclass(frozen=True)
class Block:
    cid: CID
    data: bytes


@dataclass(frozen=True)
class _Child:
    cid: CID
    tsize: int  # bytes of the whole sub-DAG (block bytes, summed)
    filesize: int  # bytes of file content under it


@dataclass(frozen=True)
class ImportResult:
    cid: CID
    size: int
    blocks: int


def parse_cid(text: str) -> CID:
    """Parse a CID string, raising ``ValueError`` with a clear message."""
    try:
        return CID.decode(text)
    except Exception as exc:  # multiformats raises several unrelated types
        raise ValueError(f"not a valid CID: {text!r}") from exc


def block_cid(data: bytes, codec: str) -> CID:
    """CIDv1 (sha2-256) of a block's bytes."""
    return CID("base32", 1, codec, multihash.wrap(hashlib.sha256(data).digest(), "sha2-256"))


def check_block(cid: CID, data: bytes) -> None:
    """Raise :class:`InvalidBlockError` unless ``data`` hashes to ``cid``'s multihash."""
    if cid.hashfun.name != "sha2-256":
        raise InvalidBlockError(f"{cid}: unsupported hash function {cid.hashfun.name}")
    digest = hashlib.sha256(data).digest()
    if digest != cid.raw_digest:
        raise InvalidBlockError(
            f"block {cid} is corrupt: expected sha2-256 {cid.raw_digest.hex()}, "
            f"computed {digest.hex()}"
        )


def chunk_bytes(data: bytes, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Fixed-size chunks of ``data`` (a memoryview slice per chunk, no copy of the whole)."""
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])


def import_bytes(data: bytes) -> tuple[ImportResult, list[Block]]:
    """Import ``data`` as a UnixFS file; return the root and every block, root last."""
    blocks: list[Block] = []
    result = import_chunks(chunk_bytes(data), blocks.append)
    return result, blocks


def cid_for_bytes(data: bytes) -> str:
    """The CID ``ipfs add --cid-version=1 --raw-leaves`` gives ``data``, without storing it."""
    return str(import_chunks(chunk_bytes(data), lambda _block: None).cid)


def import_chunks(chunks: Iterable[bytes], emit: Callable[[Block], None]) -> ImportResult:
    """Build the balanced UnixFS DAG over ``chunks``, calling ``emit(block)`` for each block.

    Blocks are emitted children before parents, the root last. Chunks must be ``CHUNK_SIZE``
    long except the last.
    """
    sink = emit
    levels: list[list[_Child]] = [[]]
    count = 0

    def add(level: int, child: _Child) -> None:
        if len(levels) == level:
            levels.append([])
        if len(levels[level]) == MAX_LINKS:
            parent = _file_node(levels[level], sink)
            levels[level] = []
            add(level + 1, parent)
        levels[level].append(child)

    for chunk in chunks:
        if not chunk:
            continue
        cid = block_cid(chunk, _RAW)
        sink(Block(cid, bytes(chunk)))
        count += 1
        add(0, _Child(cid, len(chunk), len(chunk)))

    if count == 0:
        # An empty file is the empty raw leaf, as the JS importer and Kubo (raw leaves) write it.
        cid = block_cid(b"", _RAW)
        sink(Block(cid, b""))
        return ImportResult(cid, 0, 1)

    level = 0
    while True:
        top = all(not lvl for lvl in levels[level + 1 :])
        if top and len(levels[level]) == 1:
            root = levels[level][0]
            return ImportResult(root.cid, root.filesize, count)
        parent = _file_node(levels[level], sink)
        levels[level] = []
        add(level + 1, parent)
        level += 1


def _file_node(children: list[_Child], emit: Callable[[Block], None]) -> _Child:
    unixfs = _field_varint(1, _UNIXFS_FILE)
    filesize = sum(c.filesize for c in children)
    unixfs += _field_varint(3, filesize)
    for c in children:
        unixfs += _field_varint(4, c.filesize)
    node = b""
    for c in children:
        link = _field_bytes(1, bytes(c.cid)) + _field_bytes(2, b"") + _field_varint(3, c.tsize)
        node += _field_bytes(2, link)
    node += _field_bytes(1, unixfs)
    cid = block_cid(node, _DAG_PB)
    emit(Block(cid, node))
    return _Child(cid, len(node) + sum(c.tsize for c in children), filesize)


# -- decoding -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileNode:
    """A decoded dag-pb UnixFS file node: inline data (if any) and child links in order."""

    data: bytes
    links: tuple[CID, ...]
    filesize: int | None


def decode_file_node(block: bytes) -> FileNode:
    """Decode a dag-pb block holding a UnixFS File (or Raw) node."""
    links: list[CID] = []
    unixfs: bytes | None = None
    for number, value in _fields(block):
        if number == 2 and isinstance(value, bytes):
            for ln, lv in _fields(value):
                if ln == 1 and isinstance(lv, bytes):
                    try:
                        links.append(CID.decode(lv))
                    except Exception as exc:
                        raise InvalidBlockError(f"dag-pb link has a bad CID: {exc}") from exc
        elif number == 1 and isinstance(value, bytes):
            unixfs = value
    if unixfs is None:
        raise InvalidBlockError("dag-pb node has no UnixFS Data")
    ftype, data, filesize = None, b"", None
    for number, value in _fields(unixfs):
        if number == 1 and isinstance(value, int):
            ftype = value
        elif number == 2 and isinstance(value, bytes):
            data = value
        elif number == 3 and isinstance(value, int):
            filesize = value
    if ftype not in (0, _UNIXFS_FILE):  # Raw or File
        raise InvalidBlockError(f"UnixFS node of type {ftype} is not a file")
    return FileNode(data, tuple(links), filesize)


# -- protobuf wire format (only what dag-pb and UnixFS use) --------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(value)) + value


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise InvalidBlockError("truncated or overlong protobuf varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            yield number, value
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise InvalidBlockError("truncated protobuf field")
            yield number, buf[pos : pos + length]
            pos += length
        else:
            raise InvalidBlockError(f"unexpected protobuf wire type {wire}")
