"""More than 600 records on one node: the keypoint stage must neither crash nor miss.

Version 0.1 matched a suspect's keypoints against every stored descriptor at once and hit
OpenCV's IMGIDX_ONE assertion past 262,144 descriptors (~590 photos). The records here are
620 distinct pictures stored and recorded with the project's own fingerprinting, storage,
signing and log code (one bulk append), then the node's keypoint index catches up from the
stored images; a photo registered normally is then found from a crop and from a rotation.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tests.conftest import jpeg_bytes

from blockimage import Node
from blockimage.evaluation import signed_record, textured_picture
from blockimage.imaging import decode_image

COUNT = 620


@pytest.fixture(scope="module")
def crowded(tmp_path_factory, photos):
    home = tmp_path_factory.mktemp("crowded") / "home"
    rng = np.random.default_rng(620)
    with Node(home) as node:
        key = node.keys.owner_key("archive")
        records = []
        for _ in range(COUNT):
            data = jpeg_bytes(textured_picture(rng), 90)
            pixels = decode_image(data).pixels
            cid = node.storage.put(data)
            records.append(
                signed_record(
                    data, pixels, cid=cid, owner="archive", key=key,
                    created_at="2026-11-28T00:00:00Z",
                )
            )  # fmt: skip
        node.ledger.append_many(records)
        source = home.parent / "coffee.png"
        source.write_bytes(photos["coffee"].read_bytes())
        receipt = node.register(source, owner="alice")
    return home, receipt


def test_the_stored_keypoints_exceed_what_broke_the_brute_force_search(crowded):
    home, _ = crowded
    with Node(home) as node:
        index = node.matchers[-1].index()  # catches up: signatures from the stored images
        signatures = [index.signature(r.record_id) for _, r in node.ledger.records()]
        assert node.ledger.size() == COUNT + 1 and None not in signatures
    assert sum(len(s.descriptors) for s in signatures) > 262_144


def test_a_crop_a_rotation_and_an_unknown_photo_among_620_records(crowded, photos):
    home, receipt = crowded
    registered = Image.open(receipt.output).convert("RGB")
    img = np.asarray(registered)
    h, w = img.shape[:2]
    crop = np.ascontiguousarray(img[int(h * 0.1) :, : w - int(w * 0.1)])
    rotated = np.asarray(registered.rotate(2, Image.Resampling.BICUBIC))
    b = int(0.04 * max(h, w))
    rotated = np.ascontiguousarray(rotated[b:-b, b:-b])
    with Node(home) as node:
        for copy in (crop, rotated):
            verdict = node.verify(jpeg_bytes(copy, 85))
            assert verdict.record_id == receipt.record.record_id
            assert verdict.verdict == "benign"
        assert node.verify(photos["rocket"]).verdict == "unknown"
