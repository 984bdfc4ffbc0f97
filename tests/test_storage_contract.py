"""The Storage Protocol contract, run against the embedded blockstore and a real Kubo node."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from blockimage.config import Settings
from blockimage.storage import ContentNotFoundError, Storage, StorageError, open_storage
from blockimage.storage.car import read_car, write_car
from blockimage.storage.kubo import KuboStorage
from blockimage.storage.local import LocalBlockstore
from blockimage.storage.unixfs import CHUNK_SIZE, cid_for_bytes

SIZES = [
    1,
    12,
    1000,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    3 * CHUNK_SIZE + 17,
    174 * CHUNK_SIZE,
    175 * CHUNK_SIZE + 5,
]


@pytest.fixture(params=["local", "kubo"])
def store(request, tmp_path):
    if request.param == "local":
        yield LocalBlockstore(tmp_path / "blocks")
    else:
        kubo = request.getfixturevalue("kubo")
        client = KuboStorage(kubo.api, fetch_timeout=2.0, has_timeout=2.0)
        yield client
        client.close()


def random_bytes(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def test_is_a_storage(store):
    assert isinstance(store, Storage)


@pytest.mark.parametrize("size", SIZES)
def test_put_gives_the_ipfs_cid_and_get_gives_the_bytes_back(store, size):
    data = random_bytes(size, size)
    cid = store.put(data)
    assert cid == cid_for_bytes(data)  # identical on both backends, multi-level included
    assert store.has(cid)
    assert store.get(cid) == data


def test_missing_content_is_reported_quickly_not_waited_for_forever(store):
    missing = cid_for_bytes(b"nobody stored this " + str(time.time()).encode())
    t0 = time.perf_counter()
    assert not store.has(missing)
    with pytest.raises(ContentNotFoundError):
        store.get(missing)
    assert time.perf_counter() - t0 < 10


def test_pin_of_stored_content_works_and_of_missing_content_fails(store):
    cid = store.put(random_bytes(5000, 1))
    store.pin(cid)
    with pytest.raises(ContentNotFoundError):
        store.pin(cid_for_bytes(b"missing " + str(time.time()).encode()))


def test_a_daemon_that_is_down_is_a_clear_error():
    client = KuboStorage("http://127.0.0.1:9", timeout=2.0)  # nothing listens on port 9
    with pytest.raises(StorageError, match="not reachable.*scripts/kubo.sh up"):
        client.put(b"x")


@pytest.mark.parametrize("lie", ["a block's bytes altered", "a block left out", "another file"])
def test_kubo_reads_are_checked_block_by_block(tmp_path, lie):
    """An RPC endpoint that lies (a compromised or buggy node, a proxy) is caught: get fetches
    the DAG as a CAR and checks every block against its CID before reassembling the file."""
    truth = LocalBlockstore(tmp_path / "blocks")
    data = random_bytes(3 * CHUNK_SIZE + 17, 7)
    cid = truth.put(data)
    car = read_car(truth.export_car(cid))
    blocks = dict(car.blocks)
    leaf = next(c for c in blocks if c != car.roots[0])
    if lie == "a block's bytes altered":
        blocks[leaf] = bytes([blocks[leaf][0] ^ 1]) + blocks[leaf][1:]
    elif lie == "a block left out":
        del blocks[leaf]
    roots = list(car.roots)
    if lie == "another file":  # a valid DAG, but of other content
        other = read_car(truth.export_car(truth.put(b"something else entirely")))
        roots, blocks = list(other.roots), dict(other.blocks)
    served = write_car(roots, blocks.items())

    def endpoint(request: httpx.Request) -> httpx.Response:
        if request.url.path in ("/api/v0/dag/export",):
            return httpx.Response(200, content=served)
        return httpx.Response(200, content=data[::-1])  # `cat` would have passed this on

    client = KuboStorage("http://127.0.0.1:5001")
    client._client = httpx.Client(
        base_url="http://127.0.0.1:5001/api/v0", transport=httpx.MockTransport(endpoint)
    )
    with pytest.raises(StorageError):
        client.get(cid)
    served = write_car(list(car.roots), car.blocks.items())  # the honest answer passes
    assert client.get(cid) == data


def test_kubo_gives_up_on_missing_content_after_20_seconds_by_default(tmp_path):
    """README: content no connected peer has is reported as not found after 20 s (Kubo itself
    would wait forever); the value the node configures, not a wall-clock measurement."""
    settings = Settings(home=tmp_path, storage="kubo", kubo_api="http://127.0.0.1:9")
    client = open_storage(settings)
    assert isinstance(client, KuboStorage)
    assert client._fetch_timeout == 20.0 and client._has_timeout <= 3.0
    client.close()
