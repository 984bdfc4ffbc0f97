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
from .car import write_car
from .unixfs import (
    Block,
    InvalidBlockError,
    check_block,
    chunk_bytes,
    cid_text,
    file_content,
    import_chunks,
    parse_cid,
    walk_file,
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
        try:
            return file_content(parse_cid(cid), self.read_block)
        except InvalidBlockError as exc:
            raise StorageError(str(exc)) from None

    def export_car(self, cid: str) -> bytes:
        """The DAG under ``cid`` as a CARv1 file, every block checked on the way."""
        root = parse_cid(cid)
        try:
            return write_car([root], walk_file(root, self.read_block))
        except InvalidBlockError as exc:
            raise StorageError(str(exc)) from None

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)
