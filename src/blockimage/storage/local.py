"""The embedded blockstore: UnixFS blocks as files under ``blocks/``, one file per block.

Layout follows Kubo's flatfs idea: ``blocks/<shard>/<CID>`` where the shard is the next-to-last
two characters of the CID string, so directories stay small. Each block is written to a temporary
file in its shard, flushed and fsync'd, then renamed into place — a reader never sees half a
block, and a crash leaves at worst an orphan temporary file. Every read re-hashes the block.
Everything stored here is kept (nothing is garbage-collected), so ``pin`` records intent only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import ContentNotFoundError, StorageError
from .unixfs import (
    DAG_PB,
    RAW,
    Block,
    InvalidBlockError,
    check_block,
    chunk_bytes,
    cid_codec,
    cid_text,
    decode_file_node,
    import_chunks,
    parse_cid,
)

__all__ = ["LocalBlockstore"]


class LocalBlockstore:
    """A :class:`~blockimage.storage.Storage` on the local filesystem."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync

    # -- Storage ----------------------------------------------------------------------------------
    def put(self, data: bytes) -> str:
        touched: set[Path] = set()

        def write(block: Block) -> None:
            touched.add(self._write_block(block))

        result = import_chunks(chunk_bytes(data), write)
        if self._fsync:
            for shard in touched:
                _fsync_dir(shard)
        return cid_text(result.cid)

    def get(self, cid: str) -> bytes:
        root = parse_cid(cid)
        parts: list[bytes] = []
        self._read_file(root, parts, depth=0)
        return b"".join(parts)

    def has(self, cid: str) -> bool:
        return self._path(parse_cid(cid)).is_file()

    def pin(self, cid: str) -> None:
        if not self.has(cid):
            raise ContentNotFoundError(f"cannot pin {cid}: not in the local blockstore")

    # -- blocks -----------------------------------------------------------------------------------
    def _path(self, cid: bytes) -> Path:
        name = cid_text(cid)
        return self.root / name[-3:-1] / name

    def _write_block(self, block: Block) -> Path:
        path = self._path(block.cid)
        shard = path.parent
        if path.exists():
            return shard
        shard.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=shard, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(block.data)
                if self._fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return shard

    def read_block(self, cid: bytes) -> bytes:
        """The bytes of one block, checked against its CID."""
        try:
            data = self._path(cid).read_bytes()
        except FileNotFoundError:
            raise ContentNotFoundError(
                f"block {cid_text(cid)} is not in the local blockstore"
            ) from None
        try:
            check_block(cid, data)
        except InvalidBlockError as exc:
            raise StorageError(str(exc)) from None
        return data

    def _read_file(self, cid: bytes, out: list[bytes], depth: int) -> None:
        if depth > 64:
            raise StorageError(f"{cid_text(cid)}: DAG deeper than 64 levels")
        data = self.read_block(cid)
        codec = cid_codec(cid)
        if codec == RAW:
            out.append(data)
            return
        if codec != DAG_PB:
            raise StorageError(f"{cid_text(cid)}: codec 0x{codec:x} is not a UnixFS file")
        try:
            node = decode_file_node(data)
        except InvalidBlockError as exc:
            raise StorageError(f"{cid_text(cid)}: {exc}") from None
        out.append(node.data)
        for link in node.links:
            self._read_file(link, out, depth + 1)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)
