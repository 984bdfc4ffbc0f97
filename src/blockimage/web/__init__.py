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
        server = uvicorn.Server(config)
        logging.getLogger("blockimage.serve").info(
            "serving %s on http://%s:%d with %d image workers",
            service.home,
            host,
            port,
            service.pool.workers,
        )
        server.run()
    finally:
        service.close()
