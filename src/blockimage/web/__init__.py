"""``blockimage serve``: the HTTP API and the web page over one long-running node.

:class:`~blockimage.web.service.Service` holds the node (reads) and the pool of image workers;
:func:`~blockimage.web.app.create_app` builds the ASGI application over it; :func:`serve` runs
it with uvicorn until SIGINT or SIGTERM, finishing the requests in flight.
"""

from __future__ import annotations

import os

__all__ = ["serve"]


def serve(
    home: str | os.PathLike[str] | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int | None = None,
    queue: int | None = None,
    max_upload_bytes: int = 50 * 1024 * 1024,
    graceful_seconds: int = 30,
) -> None:
    """Open the home and serve it; returns after a graceful shutdown."""
    import logging

    import uvicorn

    from .app import create_app
    from .service import Service

    logging.basicConfig(level=logging.INFO, format="blockimage: %(message)s")
    _Server = _server_class()
    service = Service(home, workers=workers, queue=queue, max_upload_bytes=max_upload_bytes)
    try:
        config = uvicorn.Config(
            create_app(service),
            host=host,
            port=port,
            access_log=False,  # the app logs one line per request itself
            log_level="warning",
            timeout_graceful_shutdown=graceful_seconds,
            lifespan="on",
        )
        server = _Server(config)
        logging.getLogger("blockimage.serve").info(
            "serving %s on http://%s:%d with %d image workers",
            service.home,
            host,
            port,
            service.pool.workers,
        )
        server.run()
    finally:
        service.close()  # waits for the image workers, removes the uploads folder


def _server_class() -> type:
    import contextlib
    import signal
    from collections.abc import Iterator

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, except that SIGINT / SIGTERM end ``run()`` after the graceful
        shutdown instead of being raised again (which would kill the process before the
        image workers and the uploads folder are cleaned up), so that ``serve`` exits 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server
