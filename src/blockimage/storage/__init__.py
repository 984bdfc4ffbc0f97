"""Content-addressed storage of image files, keyed by IPFS CIDs.

Every backend implements :class:`Storage` and passes the same contract tests. The embedded
default is :class:`~blockimage.storage.local.LocalBlockstore`; CIDs are those of
``ipfs add --cid-version=1 --raw-leaves`` (see :mod:`blockimage.storage.unixfs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import BlockImageError

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["Storage", "StorageError", "ContentNotFoundError", "open_storage"]


class StorageError(BlockImageError, RuntimeError):
    """The storage backend failed (unreachable, corrupt content, refused write)."""


class ContentNotFoundError(StorageError, KeyError):
    """The requested CID is not in this store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "content not found"


@runtime_checkable
class Storage(Protocol):
    def put(self, data: bytes) -> str:
        """Store ``data`` as a UnixFS file, pinned; return its CID (CIDv1, base32)."""
        ...

    def get(self, cid: str) -> bytes:
        """The file's bytes, every block re-hashed against its CID on the way."""
        ...

    def has(self, cid: str) -> bool:
        """Whether the root block of ``cid`` is held locally."""
        ...

    def pin(self, cid: str) -> None:
        """Keep ``cid`` and all its blocks from garbage collection."""
        ...

    def export_car(self, cid: str) -> bytes:
        """The DAG under ``cid`` as a CARv1 file (root ``cid``)."""
        ...


def open_storage(settings: Settings) -> Storage:
    """The storage backend the settings name (``[storage] backend``, ``BLOCKIMAGE_STORAGE``)."""
    if settings.storage == "kubo":
        from .kubo import KuboStorage

        return KuboStorage(settings.kubo_api)
    from .local import LocalBlockstore

    return LocalBlockstore(settings.home / "blocks")
