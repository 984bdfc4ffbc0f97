"""What ``serve``'s image workers do: one function per kind of image work, run in a pool
process (:func:`blockimage.batch.start_worker` opened its node). Each reads the uploaded file,
calls the node, renders what the response needs, and returns plain data (dicts, text) or the
:class:`~blockimage.errors.BlockImageError` that refused the input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from ..batch import worker_node
from ..errors import BlockImageError

__all__ = ["Render", "match_file", "register_file", "verify_file", "warm"]

# What a verify renders besides the verdict: nothing, the report, or the page's fragment.
Render = Literal["none", "report", "page"]


def verify_file(
    path: str, name: str, render: Render
) -> tuple[dict[str, Any] | None, str | None, BlockImageError | None]:
    """(verdict document, rendered HTML or None, None), or (None, None, the refusal)."""
    node = worker_node()
    try:
        evidence = node.verify_detailed(Path(path).read_bytes())
    except BlockImageError as exc:
        return None, None, exc
    html = None
    if render == "report":
        from ..report import render_report

        html = render_report(evidence, suspect_name=name)
    elif render == "page":
        from ..report import render_body

        html = render_body(evidence, suspect_name=name, copy=True)
    return evidence.verdict.to_dict(), html, None


def register_file(
    path: str, owner: str, parent: str | None
) -> tuple[dict[str, Any] | None, BlockImageError | None]:
    """(receipt document, None), or (None, the refusal). Nothing is written but the record
    and the stored image: the watermarked file is fetched by its CID."""
    try:
        receipt = worker_node().register(Path(path).read_bytes(), owner=owner, parent=parent)
    except BlockImageError as exc:
        return None, exc
    return receipt.to_dict(), None


def match_file(
    path: str, alg: str | None, max_results: int
) -> tuple[list[dict[str, Any]] | None, BlockImageError | None]:
    """(the C2PA soft-binding matches of the image, None), or (None, the refusal)."""
    node = worker_node()
    try:
        found = node.resolver.by_content(node.load(Path(path)), alg, max_results)
    except BlockImageError as exc:
        return None, exc
    return [match.to_dict() for match in found], None


def warm() -> int:
    """Load what the first request would (models, indexes) so that it does not wait; the
    worker's pid."""
    import numpy as np

    node = worker_node()
    flat = np.full((64, 64, 3), 128, np.uint8)
    node.verify(flat)  # unknown: writes nothing; opens the matchers and the classifier
    return os.getpid()
