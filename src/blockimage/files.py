"""Writing files a user will find: atomically, never over another file, and nothing left behind.

A file is first written to a staging file beside its final path (same directory, so the final
step is a rename on one filesystem), flushed and fsync'd, then moved into place. Staging files
are named ``.NAME.blockimage-PID-RANDOM.tmp``: a process killed between the two steps leaves
one, and the next run removes those whose process is gone. Files are created with mode 0666
less the umask, as any program's output; keys are written elsewhere (:mod:`blockimage.keys`).
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["stage_file", "write_atomic", "place_new", "process_running", "remove_stale_staging"]

_STAGED = re.compile(r"^\..+\.blockimage-(\d+)-[0-9a-f]{8}\.tmp$")


def stage_file(path: Path, data: bytes, *, mode: int = 0o666) -> Path:
    """Write ``data`` to a new staging file beside ``path`` (fsync'd); the caller moves it.
    ``mode`` is the new file's permission bits before the umask (0o600: private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.blockimage-{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged


def write_atomic(path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """Replace ``path`` with ``data`` through a staging file and a rename (for files that are
    meant to be replaced: a report, a fetched copy, the node's own config, the token list)."""
    staged = stage_file(path, data, mode=mode)
    try:
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def place_new(staged: Path, path: Path) -> Path:
    """Move ``staged`` to ``path`` without replacing anything: if ``path`` exists, to
    ``STEM-2.SUFFIXES``, ``STEM-3.SUFFIXES``...; returns where it went. The move is a hard link
    (which fails rather than replace) and the removal of the staging name."""
    stem, dot, suffixes = path.name.partition(".")
    for n in range(1, 10_000):
        target = path if n == 1 else path.with_name(f"{stem}-{n}{dot}{suffixes}")
        try:
            os.link(staged, target)
        except FileExistsError:
            continue
        staged.unlink()
        return target
    raise FileExistsError(f"no free name for {path} (tried up to {target.name})")


def remove_stale_staging(directory: Path) -> int:
    """Remove staging files in ``directory`` whose writing process no longer runs."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        found = _STAGED.match(entry.name)
        if found and not process_running(int(found.group(1))):
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on ``path`` (created if missing): a
    read-modify-write that other processes of this home must not interleave."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
