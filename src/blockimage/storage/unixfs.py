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

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from multiformats import CID, multicodec

from ..errors import BlockImageError

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
    "cid_text",
    "cid_codec",
    "walk_file",
    "dag_cids",
    "file_content",
]

CHUNK_SIZE = 262_144
MAX_LINKS = 174

RAW = multicodec.get("raw").code  # 0x55
DAG_PB = multicodec.get("dag-pb").code  # 0x70
DAG_CBOR = multicodec.get("dag-cbor").code  # 0x71
_SHA2_256 = multicodec.get("sha2-256").code  # 0x12
_UNIXFS_FILE = 2

# CIDs are handled in binary form (version, codec, multihash) inside the importer and the
# blockstore: building a multiformats.CID object costs ~100 us of runtime type checks, which
# halved import throughput. multiformats parses every CID that comes from outside.


class InvalidBlockError(BlockImageError, ValueError):
    """A block's bytes do not hash to its CID, or do not decode as UnixFS/dag-pb."""


@dataclass(frozen=True)
class Block:
    cid: bytes  # binary CIDv1
    data: bytes


@dataclass(frozen=True)
class _Child:
    cid: bytes
    tsize: int  # bytes of the whole sub-DAG (block bytes, summed)
    filesize: int  # bytes of file content under it


@dataclass(frozen=True)
class ImportResult:
    cid: bytes
    size: int
    blocks: int


def parse_cid(text: str) -> bytes:
    """Parse a CID string (any multibase, v0 or v1) into binary CIDv1 form.

    Raises ``ValueError`` with a clear message for anything that is not a CID.
    """
    fast = _parse_base32_cidv1(text)
    if fast is not None:
        return fast
    try:
        cid = CID.decode(text)
    except Exception as exc:  # multiformats raises several unrelated types
        raise ValueError(f"not a valid CID: {text!r}") from exc
    return bytes(cid.set(version=1)) if cid.version == 0 else bytes(cid)


def _parse_base32_cidv1(text: str) -> bytes | None:
    """The binary CID of a canonical base32 CIDv1 string (what this project writes), parsed
    without multiformats' runtime type checks (~1.4 ms a CID, most of an audit's storage
    pass); None for any other form, which multiformats then parses."""
    if not text.startswith("b") or len(text) < 10:
        return None
    body = text[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
        _split_cid(raw)
    except (binascii.Error, ValueError):
        return None
    return raw if cid_text(raw) == text else None


def cid_text(cid: bytes) -> str:
    """The base32 multibase text of a binary CIDv1 ('b' + RFC 4648 base32, lower case)."""
    return "b" + base64.b32encode(cid).decode("ascii").lower().rstrip("=")


def block_cid(data: bytes, codec: int) -> bytes:
    """Binary CIDv1 (sha2-256) of a block's bytes."""
    return bytes([1]) + _varint(codec) + bytes([_SHA2_256, 32]) + hashlib.sha256(data).digest()


def _split_cid(cid: bytes) -> tuple[int, int, bytes]:
    """(codec, multihash code, digest) of a binary CIDv1."""
    version, pos = _read_varint(cid, 0)
    if version != 1:
        raise InvalidBlockError(f"unsupported CID version {version}")
    codec, pos = _read_varint(cid, pos)
    hash_code, pos = _read_varint(cid, pos)
    length, pos = _read_varint(cid, pos)
    digest = cid[pos:]
    if len(digest) != length:
        raise InvalidBlockError(f"CID {cid_text(cid)} has a truncated multihash")
    return codec, hash_code, digest


def cid_codec(cid: bytes) -> int:
    return _split_cid(cid)[0]


def check_block(cid: bytes, data: bytes) -> None:
    """Raise :class:`InvalidBlockError` unless ``data`` hashes to ``cid``'s multihash."""
    _, hash_code, expected = _split_cid(cid)
    if hash_code != _SHA2_256:
        raise InvalidBlockError(f"{cid_text(cid)}: unsupported hash function 0x{hash_code:x}")
    digest = hashlib.sha256(data).digest()
    if digest != expected:
        raise InvalidBlockError(
            f"block {cid_text(cid)} is corrupt: expected sha2-256 {expected.hex()}, "
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
    return cid_text(import_chunks(chunk_bytes(data), lambda _block: None).cid)


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
        cid = block_cid(chunk, RAW)
        sink(Block(cid, bytes(chunk)))
        count += 1
        add(0, _Child(cid, len(chunk), len(chunk)))

    if count == 0:
        # An empty file is the empty raw leaf, as the JS importer and Kubo (raw leaves) write it.
        cid = block_cid(b"", RAW)
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
        link = _field_bytes(1, c.cid) + _field_bytes(2, b"") + _field_varint(3, c.tsize)
        node += _field_bytes(2, link)
    node += _field_bytes(1, unixfs)
    cid = block_cid(node, DAG_PB)
    emit(Block(cid, node))
    return _Child(cid, len(node) + sum(c.tsize for c in children), filesize)


# -- decoding -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileNode:
    """A decoded dag-pb UnixFS file node: inline data (if any) and child links in order."""

    data: bytes
    links: tuple[bytes, ...]  # binary CIDs
    filesize: int | None


def decode_file_node(block: bytes) -> FileNode:
    """Decode a dag-pb block holding a UnixFS File (or Raw) node."""
    links: list[bytes] = []
    unixfs: bytes | None = None
    for number, value in _fields(block):
        if number == 2 and isinstance(value, bytes):
            for ln, lv in _fields(value):
                if ln == 1 and isinstance(lv, bytes):
                    if lv[:2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
                        lv = bytes([1]) + _varint(DAG_PB) + lv
                    _split_cid(lv)  # raises on a malformed CID
                    links.append(lv)
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


# Work bounds for walking a DAG that comes from outside (an evidence bundle, another node): a
# DAG may repeat links (a file of repeated chunks does), so 40 levels of two links each
# describe 2^40 visits in a few kilobytes. Every walk is bounded by the bytes it may produce
# and by the blocks it may visit (chunks of at least 1 KiB on average).
MAX_FILE_BYTES = 256 * 1024 * 1024
_MIN_MEAN_CHUNK = 1024


def walk_file(
    root: bytes, get_block: Callable[[bytes], bytes], *, max_bytes: int = MAX_FILE_BYTES
) -> Iterator[tuple[bytes, bytes]]:
    """(CID, block) of every block of the UnixFS file under ``root``, in file order.

    ``get_block`` returns a block's bytes (and should check them against the CID); the file's
    content is the concatenation of raw leaves and inline node data, in this order. Raises
    :class:`InvalidBlockError` for a file that declares or yields more than ``max_bytes``, or
    needs more block visits than such a file can.
    """
    max_visits = 1 + max_bytes // _MIN_MEAN_CHUNK
    produced = visits = 0
    stack = [(root, 0)]
    while stack:
        cid, depth = stack.pop()
        if depth > 64:
            raise InvalidBlockError(f"{cid_text(cid)}: DAG deeper than 64 levels")
        visits += 1
        if visits > max_visits:
            raise InvalidBlockError(
                f"{cid_text(root)}: more than {max_visits:,} block visits for a file of at "
                f"most {max_bytes:,} bytes (a DAG that repeats its links)"
            )
        block = get_block(cid)
        codec = cid_codec(cid)
        if codec == RAW:
            produced += len(block)
        elif codec == DAG_PB:
            node = decode_file_node(block)
            if depth == 0 and node.filesize is not None and node.filesize > max_bytes:
                raise InvalidBlockError(
                    f"{cid_text(root)}: declares {node.filesize:,} bytes, more than the "
                    f"limit of {max_bytes:,}"
                )
            produced += len(node.data)
            stack.extend((link, depth + 1) for link in reversed(node.links))
        else:
            raise InvalidBlockError(f"{cid_text(cid)}: codec 0x{codec:x} is not a UnixFS file")
        if produced > max_bytes:
            raise InvalidBlockError(f"{cid_text(root)}: more than {max_bytes:,} bytes")
        yield cid, block


def dag_cids(root: bytes, get_block: Callable[[bytes], bytes]) -> Iterator[bytes]:
    """Every CID of the UnixFS file under ``root``: internal nodes are read for their links,
    raw leaves are not read at all."""
    stack = [(root, 0)]
    while stack:
        cid, depth = stack.pop()
        yield cid
        if cid_codec(cid) == DAG_PB and depth < 64:
            node = decode_file_node(get_block(cid))
            stack.extend((link, depth + 1) for link in node.links)


def file_content(
    root: bytes, get_block: Callable[[bytes], bytes], *, max_bytes: int = MAX_FILE_BYTES
) -> bytes:
    """The bytes of the UnixFS file under ``root`` (at most ``max_bytes``)."""
    parts = []
    for cid, block in walk_file(root, get_block, max_bytes=max_bytes):
        if cid_codec(cid) == RAW:
            parts.append(block)
        else:
            parts.append(decode_file_node(block).data)
    return b"".join(parts)


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
