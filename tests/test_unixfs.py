"""The UnixFS importer must give exactly the CIDs of `ipfs add --cid-version=1 --raw-leaves`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from multiformats import CID

from blockimage.storage import ContentNotFoundError, StorageError
from blockimage.storage.local import LocalBlockstore
from blockimage.storage.unixfs import (
    CHUNK_SIZE,
    DAG_PB,
    MAX_LINKS,
    cid_codec,
    cid_for_bytes,
    cid_text,
    decode_file_node,
    import_bytes,
    parse_cid,
)

VECTORS = json.loads((Path(__file__).parent / "data/unixfs/vectors.json").read_text())["vectors"]


def pattern(size: int) -> bytes:
    """Byte i is i mod 251 (what generate.mjs feeds the JS importer)."""
    return np.resize(np.arange(251, dtype=np.uint8), size).tobytes()


def test_hello_world_has_the_reference_cid():
    assert cid_for_bytes(b"hello world\n") == (
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    )


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_cid_matches_the_js_importer(vector):
    data = vector["text"].encode() if "text" in vector else pattern(vector["size"])
    assert cid_for_bytes(data) == vector["cid"]


@pytest.mark.parametrize("chunks, depth", [(1, 0), (2, 1), (MAX_LINKS, 1), (MAX_LINKS + 1, 2)])
def test_tree_depth_grows_past_174_links(chunks, depth):
    _, blocks = import_bytes(pattern(chunks * CHUNK_SIZE))
    root = blocks[-1]
    levels = 0
    node = root
    while cid_codec(node.cid) == DAG_PB:
        levels += 1
        links = decode_file_node(node.data).links
        assert len(links) <= MAX_LINKS
        node = next(b for b in blocks if b.cid == links[0])
    assert levels == depth


def test_store_round_trip_is_byte_identical(tmp_path):
    store = LocalBlockstore(tmp_path / "blocks")
    data = pattern(3 * CHUNK_SIZE + 17)
    cid = store.put(data)
    assert cid == cid_for_bytes(data)
    assert store.has(cid)
    assert store.get(cid) == data
    assert not list((tmp_path / "blocks").rglob(".tmp-*")), "temporary files left behind"


def test_get_rehashes_and_refuses_a_corrupted_block(tmp_path):
    store = LocalBlockstore(tmp_path / "blocks")
    data = pattern(2 * CHUNK_SIZE)
    cid = store.put(data)
    leaf = sorted((tmp_path / "blocks").rglob("bafkrei*"))[0]
    corrupted = bytearray(leaf.read_bytes())
    corrupted[100] ^= 0xFF
    leaf.write_bytes(bytes(corrupted))
    with pytest.raises(StorageError, match="corrupt"):
        store.get(cid)


def test_missing_content_is_a_clear_error(tmp_path):
    store = LocalBlockstore(tmp_path / "blocks")
    missing = cid_for_bytes(b"never stored")
    assert not store.has(missing)
    with pytest.raises(ContentNotFoundError, match="not in the local blockstore"):
        store.get(missing)


def test_putting_the_same_bytes_twice_keeps_one_copy(tmp_path):
    store = LocalBlockstore(tmp_path / "blocks")
    data = pattern(CHUNK_SIZE + 5)
    assert store.put(data) == store.put(data)
    assert len([p for p in (tmp_path / "blocks").rglob("*") if p.is_file()]) == 3


def test_binary_cids_and_their_text_agree_with_multiformats():
    result, blocks = import_bytes(pattern(3 * CHUNK_SIZE))
    for block in blocks:
        assert cid_text(block.cid) == str(CID.decode(block.cid).set(base="base32"))
        assert parse_cid(cid_text(block.cid)) == block.cid
    # A CIDv0 (base58) names the same dag-pb block as its CIDv1 form.
    v0 = str(CID.decode(result.cid).set(version=0, base="base58btc"))
    assert v0.startswith("Qm") and parse_cid(v0) == result.cid


def test_invalid_cid_text_is_rejected():
    with pytest.raises(ValueError, match="not a valid CID"):
        parse_cid("not-a-cid")
