"""Registering many images on every core: a pool of worker processes, each with its own node.

``register_batch`` hands the images to ``jobs`` worker processes (started fresh, not forked, so
that no library state crosses over), each of which opens the home once and registers the
images it is given. Results come back in completion order, one per image: the receipt, or the
:class:`~blockimage.errors.BlockImageError` that refused it (the others go on). Duplicate
checks stay correct across workers: each append re-checks under the ledger's write lock
(:meth:`blockimage.registration.Registrar.register`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BlockImageError
from .records import Receipt

if TYPE_CHECKING:
    from .node import Node

__all__ = ["default_jobs", "register_batch", "spawn_context", "start_worker", "worker_node"]

_node: Node | None = None  # the worker's node, opened by start_worker


def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def register_batch(
    home: Path | None,
    images: Sequence[Path],
    *,
    owner: str,
    parent: str | None = None,
    out: Path | None = None,
    jobs: int | None = None,
    c2pa: bool = True,
    thumbnail: bool = False,
) -> Iterator[tuple[int, Receipt | BlockImageError]]:
    """(position in ``images``, receipt or the error that refused it), as each is done."""
    jobs = max(1, min(jobs or default_jobs(), len(images)))
    context = spawn_context()
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=start_worker, initargs=(home,)
    ) as pool:
        pending = {
            pool.submit(_register_one, str(image), owner, parent, out, c2pa, thumbnail): i
            for i, image in enumerate(images)
        }
        for done in as_completed(pending):
            receipt_doc, error = done.result()
            if error is not None:
                yield pending[done], error
            else:
                assert receipt_doc is not None
                yield pending[done], Receipt.from_dict(receipt_doc)


def spawn_context() -> BaseContext:
    """Fresh worker processes (not forked: no library state crosses over) whose BLAS and
    OpenMP pools have one thread: one process per core, no threads on top of them."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")  # read by the children's libraries as they load
    return get_context("spawn")


def start_worker(home: Path | None) -> None:
    """A pool worker's initializer: open the home once, OpenCV on one thread (one process per
    core), die with the parent. Used by batches and by ``serve``'s image workers."""
    import atexit

    import cv2

    from .node import Node

    _die_with_parent()
    cv2.setNumThreads(1)  # one process per core: no threads on top
    global _node
    _node = Node(home)
    atexit.register(_node.close)


def worker_node() -> Node:
    """The node :func:`start_worker` opened in this worker process."""
    if _node is None:
        raise RuntimeError("worker_node() outside a pool worker started by start_worker")
    return _node


def _register_one(
    image: str, owner: str, parent: str | None, out: Path | None, c2pa: bool, thumbnail: bool
) -> tuple[dict | None, BlockImageError | None]:
    try:
        receipt = worker_node().register(
            image, owner=owner, parent=parent, out=out, c2pa=c2pa, thumbnail=thumbnail
        )
    except BlockImageError as exc:
        return None, exc
    return receipt.to_dict(), None


def _die_with_parent() -> None:
    """On Linux, ask the kernel to kill this worker when the process that started it dies, so
    that a batch killed with SIGKILL does not go on registering in orphaned workers."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers stop when the pool's pipe closes
        pass
