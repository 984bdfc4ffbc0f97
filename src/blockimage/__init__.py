"""BlockImage: image authentication and provenance.

Register an image (keyed watermark, fingerprints, content-addressed storage, a signed Merkle
log entry) and later verify any image against what was registered.

>>> from blockimage import Node
>>> node = Node("/tmp/blockimage-home")                      # doctest: +SKIP
>>> receipt = node.register("photo.jpg", owner="alice")      # doctest: +SKIP
>>> node.verify(receipt.output).verdict                      # doctest: +SKIP
'authentic'
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING  # noqa: E402

from .errors import BlockImageError  # noqa: E402

if TYPE_CHECKING:
    from .node import Node

__all__ = ["BlockImageError", "Node", "__version__"]


def __getattr__(name: str) -> object:
    # ``blockimage.Node`` is imported on first use: ``blockimage --help`` and the commands that
    # only read the ledger then start without the image libraries.
    if name == "Node":
        from .node import Node

        return Node
    raise AttributeError(f"module 'blockimage' has no attribute {name!r}")
