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

from .errors import BlockImageError  # noqa: E402
from .node import Node  # noqa: E402

__all__ = ["BlockImageError", "Node", "__version__"]
