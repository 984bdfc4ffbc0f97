"""The embedded blockstore: UnixFS blocks as files under ``blocks/``, one file per block.

Layout follows Kubo's flatfs idea: ``blocks/<shard>/<CID>`` where the shard is the next-to-last
two characters of the CID string, so directories stay small. Each block is written to a temporary
file in its shard, flushed and fsync'd, then renamed into place — a reader never sees half a
block, and a crash leaves at worst an orphan temporary file. Every read re-hashes the block.
Everything stored here is kept (nothing is garbage-collected), so ``pin`` records intent only.
"""

from __future__ import annotations

import os
import re
import secrets
from array import array
from collections.abc import Iterable
from pathlib import Path

from ..files import process_running, remove_stale_staging
from . import ContentNotFoundError, StorageError
from .car import write_car
from .unixfs import (
    Block,
    InvalidBlockError,
    check_block,
    chunk_bytes,
    cid_text,
    dag_cids,
    file_content,
    import_chunks,
    parse_cid,
    walk_file,
)

__all__ = ["LocalBlockstore"]

# The files this store holds were imported by this node (registered images are at most a few
# hundred MB); the bound only stops a damaged DAG from running away.
_OWN_FILES = 4 * 1024**3


class LocalBlockstore:
    """A :class:`~blockimage.storage.Storage` on the local filesystem."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._staging_checked = False

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
            return file_content(parse_cid(cid), self.read_block, max_bytes=_OWN_FILES)
        except InvalidBlockError as exc:
            raise StorageError(str(exc)) from None

    def export_car(self, cid: str) -> bytes:
        """The DAG under ``cid`` as a CARv1 file, every block checked on the way."""
        root = parse_cid(cid)
        try:
            return write_car([root], walk_file(root, self.read_block, max_bytes=_OWN_FILES))
        except InvalidBlockError as exc:
            raise StorageError(str(exc)) from None

    def has(self, cid: str) -> bool:
        return self._path(parse_cid(cid)).is_file()

    def pin(self, cid: str) -> None:
        if not self.has(cid):
            raise ContentNotFoundError(f"cannot pin {cid}: not in the local blockstore")

    # -- garbage ----------------------------------------------------------------------------------
    def unreferenced(self, roots: Iterable[str]) -> list[Path]:
        """Files under ``blocks/`` that no file under ``roots`` uses: blocks left by an
        interrupted registration, and staging files of processes that are gone. Memory is 8
        bytes per referenced block (a sorted array of digest prefixes)."""
        import numpy as np

        prefixes = array("Q")
        for root in roots:
            for cid in dag_cids(parse_cid(root), self.read_block):
                prefixes.append(_prefix(cid))
        known = np.sort(np.frombuffer(prefixes, dtype=np.uint64)) if prefixes else None
        found = []
        for shard in os.scandir(self.root):
            if not shard.is_dir():
                continue
            for entry in os.scandir(shard.path):
                if shard.name == ".staging" or entry.name.startswith("."):
                    if not (entry.name.startswith(".") and _in_use(entry.name)):
                        found.append(Path(entry.path))
                    continue
                try:
                    cid = parse_cid(entry.name)
                except ValueError:
                    continue  # not ours
                key = np.uint64(_prefix(cid))
                at = int(np.searchsorted(known, key)) if known is not None else 0
                if known is None or at >= len(known) or known[at] != key:
                    found.append(Path(entry.path))
        return found

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
        tmp = self._staging() / f".{path.name}.blockimage-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
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

    def _staging(self) -> Path:
        """``blocks/.staging``: blocks are written there, then renamed into their shard; what a
        killed writer left is removed the first time this process writes."""
        staging = self.root / ".staging"
        if not self._staging_checked:
            staging.mkdir(exist_ok=True)
            remove_stale_staging(staging)
            self._staging_checked = True
        return staging

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


def _prefix(cid: bytes) -> int:
    """The first 8 bytes of a CID's digest, as an integer (collisions are 1 in 2^64)."""
    return int.from_bytes(cid[-32:-24], "big")


def _in_use(name: str) -> bool:
    """Whether a staging file's writer (its pid is in the name) still runs."""
    found = re.search(r"\.blockimage-(\d+)-", name)
    return found is not None and process_running(int(found.group(1)))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)
