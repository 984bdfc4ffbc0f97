"""Verification on photos the comparison was never tuned on (issue 20): scikit-image's
cameraman, moon, coins, cell, motion-blurred clock and the right-hand motorcycle frame. The
thresholds of `compare` were chosen on the demo and benchmark photos; these check that they
carry over, through the whole node (`Node.verify`), for every benign and every tampered kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import png_bytes
from tests.test_compare import box_iou, box_of

from blockimage import Node
from blockimage.evaluation import BENIGN_KINDS, TAMPER_KINDS, benign_variant, tampered_variant

HELD_OUT = ("camera", "moon", "coins", "cell", "clock_motion", "motorcycle_right")
# Found only while its watermark holds: 400 x 300 and motion-blurred, so the mark does not
# survive JPEG 75 or halving, its PDQ quality (35) is below the 50 that PDQ matching needs,
# and ORB finds too few corners. "unknown" is the right answer then (README: Known limits);
# a wrong verdict never is.
HARD_TO_FIND = {"clock_motion"}


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """(node, {name: the registered pixels}) for the held-out photos."""
    import skimage.data

    root = Path(skimage.data.__file__).parent
    work = tmp_path_factory.mktemp("heldout")
    node = Node(work / "home")
    marked = {}
    for name in HELD_OUT:
        receipt = node.register(root / f"{name}.png", owner="lab", out=work)
        marked[name] = np.asarray(Image.open(receipt.output).convert("RGB"))
    yield node, marked
    node.close()


@pytest.mark.parametrize("kind", BENIGN_KINDS)
def test_benign_copies_of_unseen_photos_are_benign(registered, kind):
    node, marked = registered
    wrong = {}
    for name, pixels in marked.items():
        verdict = node.verify(png_bytes(benign_variant(pixels, kind).pixels))
        if verdict.verdict == "unknown" and name in HARD_TO_FIND:
            continue
        if verdict.verdict not in ("benign", "authentic"):
            wrong[name] = (verdict.verdict, verdict.regions)
    assert wrong == {}


def test_the_hard_photo_is_found_while_its_watermark_holds(registered):
    node, marked = registered
    for kind in ("jpeg95", "jpeg85", "brightness+15", "gamma0.8"):
        for name in HARD_TO_FIND:
            verdict = node.verify(png_bytes(benign_variant(marked[name], kind).pixels))
            assert verdict.verdict == "benign" and verdict.matched_by == "watermark", kind


@pytest.mark.parametrize("kind", TAMPER_KINDS)
def test_edits_of_unseen_photos_are_tampered_where_they_are(registered, kind):
    node, marked = registered
    rng = np.random.default_rng(20)
    wrong = {}
    for name, pixels in marked.items():
        donor = marked["motorcycle_right" if name == "camera" else "camera"]  # for splices
        edit = tampered_variant(pixels, kind, rng, donor=donor)
        verdict = node.verify(png_bytes(edit.pixels))
        best = max(
            (box_iou((r.x, r.y, r.w, r.h), box_of(edit.mask)) for r in verdict.regions),
            default=0.0,
        )
        if verdict.verdict == "unknown" and name in HARD_TO_FIND:
            continue
        if verdict.verdict != "tampered" or best < 0.3:
            wrong[name] = (verdict.verdict, round(best, 2))
    assert wrong == {}
