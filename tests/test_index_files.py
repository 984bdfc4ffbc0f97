"""Derived indexes on disk: crash-safe appends, resume after kill -9, rebuilt from the ledger
when their files are deleted or damaged, with the same answers."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.test_ledger_contract import OWNER, fresh

from blockimage.fingerprint import PDQ_MIN_QUALITY
from blockimage.ledger.log import MerkleLog
from blockimage.matchers import MatcherParts, open_index_db
from blockimage.matchers._columns import ColumnFiles, IndexDamagedError
from blockimage.matchers.pdq import PdqIndex, PdqMatcher
from blockimage.storage.local import LocalBlockstore

NODE_KEY = Ed25519PrivateKey.generate()
NODE_KEY_HEX = NODE_KEY.private_bytes_raw().hex()


def fill(log: MerkleLog, n: int, seed: int = 0) -> list:
    """n signed records with random PDQ codes; every tenth of low quality."""
    rng = np.random.default_rng(seed)
    records = [
        fresh(
            OWNER,
            pdq=rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex(),
            pdq_quality=20 if i % 10 == 0 else 90,
        )
        for i in range(n)
    ]
    log.append_many(records)
    return records


@pytest.fixture
def log(tmp_path):
    ledger = MerkleLog(tmp_path / "ledger.db", NODE_KEY, origin="test/log")
    yield ledger
    ledger.close()


def columns(tmp_path, db=None):
    db = db or open_index_db(tmp_path / "index")
    return ColumnFiles(db, tmp_path / "index", "t", {"a": (np.uint32, 2)}, version="1")


def test_an_append_from_a_stale_position_writes_nothing(tmp_path):
    files = columns(tmp_path)
    assert files.append(0, 5, {"a": np.arange(6).reshape(3, 2)})
    assert not files.append(0, 7, {"a": np.zeros((1, 2))})  # another process got there first
    assert files.state() == (5, 3)
    assert files.append(5, 6, {"a": np.array([[7, 8]])})
    assert files.view()["a"].tolist() == [[0, 1], [2, 3], [4, 5], [7, 8]]


def test_bytes_a_crash_left_past_the_rows_are_cut(tmp_path):
    files = columns(tmp_path)
    files.append(0, 1, {"a": np.array([[1, 2]])})
    with open(tmp_path / "index" / "t.a", "ab") as fh:  # written, never committed
        fh.write(b"\xff" * 12)
    assert files.view()["a"].tolist() == [[1, 2]]
    files.append(1, 2, {"a": np.array([[3, 4]])})
    assert columns(tmp_path).view()["a"].tolist() == [[1, 2], [3, 4]]


def test_a_truncated_file_is_reported_and_a_new_version_starts_over(tmp_path):
    files = columns(tmp_path)
    files.append(0, 2, {"a": np.array([[1, 2], [3, 4]])})
    os.truncate(tmp_path / "index" / "t.a", 8)
    with pytest.raises(IndexDamagedError, match="2 rows"):
        columns(tmp_path).view()
    db = open_index_db(tmp_path / "index")
    newer = ColumnFiles(db, tmp_path / "index", "t", {"a": (np.uint32, 2)}, version="2")
    assert newer.state() == (0, 0)


def test_pdq_index_follows_the_ledger_and_skips_low_quality(tmp_path, log):
    records = fill(log, 50)
    index = PdqIndex(tmp_path / "index")
    assert index.sync(log) == 45
    target = records[7]
    found = index.nearest(target.pdq, max_distance=31, k=3)
    assert found[0].record_id == target.record_id and found[0].distance == 0
    low = records[10]
    assert low.pdq_quality < PDQ_MIN_QUALITY
    assert index.nearest(low.pdq, max_distance=31, k=3) == []
    more = fill(log, 5, seed=1)
    assert index.sync(log) == 4  # the first of the five has low quality
    assert index.nearest(more[-1].pdq, max_distance=0, k=1)[0].record_id == more[-1].record_id
    index.close()


@pytest.mark.parametrize("damage", ["deleted", "truncated", "foreign ids", "flipped codes"])
def test_a_damaged_pdq_index_is_rebuilt_with_the_same_answers(tmp_path, log, damage):
    records = fill(log, 40)
    parts = MatcherParts(log, LocalBlockstore(tmp_path / "blocks"), tmp_path / "index", 10**8)
    matcher = PdqMatcher(parts)
    target = records[13]
    before = matcher.nearest(target.pdq, 31)
    assert [r.record_id for r, _ in before] == [target.record_id]
    matcher.close()
    directory = tmp_path / "index"
    if damage == "deleted":
        for path in directory.glob("pdq.*"):
            path.unlink()
    elif damage == "truncated":
        os.truncate(directory / "pdq.code", 100)
    elif damage == "foreign ids":
        (directory / "pdq.record").write_bytes(secrets.token_bytes(36 * 8))
    else:  # every code moved by a few bits: the index now gives wrong distances
        codes = bytearray((directory / "pdq.code").read_bytes())
        for i in range(0, len(codes), 32):
            codes[i] ^= 0x0F
        (directory / "pdq.code").write_bytes(bytes(codes))
    matcher = PdqMatcher(parts)
    after = matcher.nearest(target.pdq, 31)
    assert [(r.record_id, d) for r, d in after] == [(r.record_id, d) for r, d in before]
    matcher.close()


def test_a_sync_killed_with_sigkill_resumes_where_it_stopped(tmp_path, log):
    records = fill(log, 3_000)
    script = (
        "import time\n"
        "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey\n"
        "from pathlib import Path\n"
        "from blockimage.ledger.log import MerkleLog\n"
        "from blockimage.matchers.pdq import PdqIndex\n"
        f"key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex({NODE_KEY_HEX!r}))\n"
        f"log = MerkleLog({str(tmp_path / 'ledger.db')!r}, key, origin='test/log')\n"
        f"index = PdqIndex(Path({str(tmp_path / 'index')!r}))\n"
        # After the first batch is committed, say so and wait to be killed.
        "index.sync(log, lambda line: (print(line, flush=True), time.sleep(60)), batch_size=500)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # one batch committed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.startswith("PDQ index: 500 of 3,000")
    index = PdqIndex(tmp_path / "index")
    leaves, rows = index.state()
    assert (leaves, rows) == (500, 450)
    index.sync(log)
    assert index.state() == (3_000, 2_700)
    codes = index._files.view()["record"][:, 0]
    assert len(set(codes.tolist())) == 2_700  # no row twice
    for target in (records[1], records[1_501], records[-1]):
        assert index.nearest(target.pdq, max_distance=0, k=1)[0].record_id == target.record_id
    index.close()
