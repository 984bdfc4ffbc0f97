"""The long-running part of ``serve``: one node for reads, a bounded pool for image work.

The node that answers reads (records, checkpoints, stored bytes) lives on one thread (SQLite
connections stay on the thread that made them; reads take milliseconds). Image work (verify,
register) runs in a pool of worker processes, each with its own node, so that it uses every
core and no request holds the GIL for another; a request finds a free place in the pool or its
queue (``workers + queue`` places) or is refused at once with :class:`ServiceBusyError`
(HTTP 503 with Retry-After), never put in an unbounded queue. Uploads are kept in a private
temporary folder, one file per request, removed when the request ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from ..batch import default_jobs, spawn_context, start_worker
from ..config import resolve_home
from ..errors import BlockImageError
from ..imaging import InvalidImageError
from ..inputs import probe_file
from ..node import Node
from ..tokens import TokenStore
from . import work

__all__ = ["Service", "ServiceBusyError", "WorkerLostError"]

log = logging.getLogger("blockimage.serve")
T = TypeVar("T")


class ServiceBusyError(BlockImageError, RuntimeError):
    """Every worker is busy and the queue is full: try again shortly (HTTP 503)."""


class WorkerLostError(BlockImageError, RuntimeError):
    """An image worker process died during a request (killed, out of memory)."""


class ImagePool:
    """``workers`` processes with ``queue`` places to wait; more is refused."""

    def __init__(self, home: Path, workers: int, queue: int) -> None:
        self.home, self.workers, self.capacity = home, workers, workers + queue
        self.active = 0
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=spawn_context(),
            initializer=start_worker,
            initargs=(self.home,),
        )

    def warm(self) -> None:
        """Start every worker now and load its models, without waiting for them."""
        for _ in range(self.workers):
            self._executor.submit(work.warm).add_done_callback(_log_warm)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.active >= self.capacity:
            raise ServiceBusyError(
                f"all {self.workers} image workers are busy and {self.capacity - self.workers} "
                "requests wait: try again in a few seconds"
            )
        self.active += 1
        executor = self._executor
        try:
            return await asyncio.wrap_future(executor.submit(fn, *args))
        except BrokenProcessPool:
            if executor is self._executor:  # the first request to see it starts a new pool
                log.error("an image worker died; starting a new pool")
                self._executor = self._start()
                executor.shutdown(wait=False, cancel_futures=True)
                self.warm()
            raise WorkerLostError(
                "the image worker handling this request stopped (killed, or out of memory); "
                "a new one is starting: try again in a few seconds"
            ) from None
        finally:
            self.active -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _log_warm(done: Future[int]) -> None:
    try:
        log.info("image worker %d ready", done.result())
    except Exception as exc:  # a broken home shows on the first request too, as one line
        log.error("an image worker could not start: %s", exc)


class Service:
    """A node's home served: reads on one thread, image work on a pool of processes."""

    def __init__(
        self,
        home: str | os.PathLike[str] | None,
        *,
        workers: int | None = None,
        queue: int | None = None,
        max_upload_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        self.home = resolve_home(home)
        self.max_upload_bytes = max_upload_bytes
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="blockimage-node")
        try:
            self.node: Node = self._reader.submit(Node, self.home, progress=log.info).result()
        except BaseException:
            self._reader.shutdown()
            raise
        operator = os.environ.get("BLOCKIMAGE_API_TOKEN") or self.node.keys.api_token()
        self.tokens = TokenStore(self.node.home / "keys", operator)
        self.uploads = Path(tempfile.mkdtemp(prefix="blockimage-uploads-"))
        workers = workers or default_jobs()
        self.pool = ImagePool(self.home, workers, 4 * workers if queue is None else queue)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the node's thread (every call that touches the node goes here)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, partial(fn, *args, **kwargs))

    def new_upload(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self.uploads, suffix=".upload")
        return fd, Path(name)

    def probe_upload(self, path: Path, name: str) -> None:
        """Refuse an upload by its header (format sniffed from the bytes, pixel and size
        limits) before any image work; errors name the upload, not the temporary file."""
        limit = min(self.max_upload_bytes, self.node.settings.max_file_bytes)
        try:
            probe_file(path, max_pixels=self.node.settings.max_pixels, max_file_bytes=limit)
        except InvalidImageError as exc:
            raise type(exc)(f"{name}: {str(exc).removeprefix(f'{path}: ')}") from None

    def close(self) -> None:
        self.pool.close()
        self._reader.submit(self.node.close).result()
        self._reader.shutdown()
        shutil.rmtree(self.uploads, ignore_errors=True)
