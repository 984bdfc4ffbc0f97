"""RFC 9162 / RFC 6962 Merkle tree: reference vectors and an independent implementation."""

from __future__ import annotations

import random

import pymerkle
import pytest

from blockimage.ledger.merkle import (
    EMPTY_ROOT,
    InvalidConsistencyProofError,
    InvalidInclusionProofError,
    RootAccumulator,
    consistency_path,
    inclusion_path,
    leaf_hash,
    root_hash,
    subtree_hasher,
    verify_consistency,
    verify_inclusion,
)

# The 8 leaves and roots used by RFC 6962 implementations (certificate-transparency-go).
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
HASHES = [leaf_hash(x) for x in LEAVES]


def test_empty_tree_root_is_sha256_of_nothing():
    assert root_hash([]).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert EMPTY_ROOT == root_hash([])


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_rfc6962_reference(size):
    assert root_hash(HASHES[:size]).hex() == ROOTS[size - 1]


def test_inclusion_path_of_leaf_0_in_8_matches_reference():
    path = inclusion_path(0, 8, subtree_hasher(HASHES))
    assert [p.hex() for p in path] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]


def test_paths_and_roots_agree_with_pymerkle():
    rng = random.Random(7)
    leaves = [rng.randbytes(rng.randint(0, 40)) for _ in range(70)]
    hashes = [leaf_hash(x) for x in leaves]
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for x in leaves:
        tree.append_entry(x)
    sub = subtree_hasher(hashes)
    for size in (1, 2, 3, 7, 8, 9, 31, 32, 33, 64, 70):
        root = root_hash(hashes[:size])
        assert tree.get_root(size) == root
        for index in {0, size // 2, size - 1}:
            theirs = tree.prove_inclusion(index + 1, size)  # pymerkle counts from 1
            ours = inclusion_path(index, size, sub)
            assert [bytes.fromhex(h) for h in theirs.serialize()["path"][1:]] == ours
            pymerkle.verify_inclusion(hashes[index], root, theirs)
            verify_inclusion(hashes[index], index, size, ours, root)


def test_every_inclusion_and_consistency_proof_verifies_up_to_40_leaves():
    hashes = [leaf_hash(i.to_bytes(2, "big")) for i in range(40)]
    sub = subtree_hasher(hashes)
    for n in range(1, 41):
        root = root_hash(hashes[:n])
        for i in range(n):
            verify_inclusion(hashes[i], i, n, inclusion_path(i, n, sub), root)
        for m in range(0, n + 1):
            verify_consistency(m, n, root_hash(hashes[:m]), root, consistency_path(m, n, sub))


def test_wrong_leaf_or_flipped_path_fails_inclusion():
    sub = subtree_hasher(HASHES)
    path = inclusion_path(5, 8, sub)
    root = bytes.fromhex(ROOTS[7])
    with pytest.raises(InvalidInclusionProofError, match="expected"):
        verify_inclusion(HASHES[4], 5, 8, path, root)
    bad = list(path)
    bad[1] = bytes(32)
    with pytest.raises(InvalidInclusionProofError):
        verify_inclusion(HASHES[5], 5, 8, bad, root)
    with pytest.raises(InvalidInclusionProofError, match="too short"):
        verify_inclusion(HASHES[5], 5, 8, path[:-1], root)
    with pytest.raises(InvalidInclusionProofError):
        verify_inclusion(HASHES[5], 8, 8, path, root)


def test_consistency_fails_for_a_rewritten_history():
    sub = subtree_hasher(HASHES)
    proof = consistency_path(3, 8, sub)
    forged_first = root_hash([HASHES[0], HASHES[1], leaf_hash(b"forged")])
    with pytest.raises(InvalidConsistencyProofError, match="first root"):
        verify_consistency(3, 8, forged_first, bytes.fromhex(ROOTS[7]), proof)
    with pytest.raises(InvalidConsistencyProofError):
        verify_consistency(3, 8, bytes.fromhex(ROOTS[2]), bytes.fromhex(ROOTS[7]), proof[:-1])


def test_accumulator_gives_the_root_of_every_prefix():
    seen = []
    acc = RootAccumulator(on_node=lambda level, idx, h: seen.append((level, idx)))
    for n, h in enumerate(HASHES, 1):
        acc.append(h)
        assert acc.root().hex() == ROOTS[n - 1]
    assert (3, 0) in seen and (2, 1) in seen and len(seen) == 15  # 8 leaves + 7 inner nodes
