"""Merkle tree hashing, inclusion and consistency proofs, as specified by RFC 9162 (CT v2.0).

Section 2.1.1: leaf hash = SHA-256(0x00 || leaf), node hash = SHA-256(0x01 || left || right),
the tree over n leaves splits at k, the largest power of two smaller than n.
Section 2.1.3: inclusion proofs (generation ``PATH`` and verification).
Section 2.1.4: consistency proofs (generation ``PROOF``/``SUBPROOF`` and verification).

Proof *generation* takes a ``subtree(start, end) -> hash`` callable so a log can serve hashes of
stored perfect subtrees; :func:`subtree_hasher` builds one from a list of leaf hashes. Proof
*verification* needs only the proof, sizes and roots, and raises on any mismatch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from ..errors import BlockImageError

__all__ = [
    "LEAF_HASH_PREFIX",
    "NODE_HASH_PREFIX",
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "largest_power_of_two_below",
    "root_hash",
    "subtree_hasher",
    "inclusion_path",
    "consistency_path",
    "verify_inclusion",
    "verify_consistency",
    "InvalidInclusionProofError",
    "InvalidConsistencyProofError",
    "RootAccumulator",
]

LEAF_HASH_PREFIX = b"\x00"
NODE_HASH_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

SubtreeHash = Callable[[int, int], bytes]


class InvalidInclusionProofError(BlockImageError, ValueError):
    """An inclusion proof does not lead from the leaf to the expected root."""


class InvalidConsistencyProofError(BlockImageError, ValueError):
    """A consistency proof does not show the smaller tree is a prefix of the larger."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_HASH_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_HASH_PREFIX + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    if n < 2:
        raise ValueError("n must be at least 2")
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hasher(leaf_hashes: Sequence[bytes]) -> SubtreeHash:
    """A ``subtree(start, end)`` over in-memory leaf hashes (MTH of D[start:end])."""

    def mth(start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return leaf_hashes[start]
        k = largest_power_of_two_below(n)
        return node_hash(mth(start, start + k), mth(start + k, end))

    return mth


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes."""
    return subtree_hasher(leaf_hashes)(0, len(leaf_hashes))


def inclusion_path(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:size]): sibling hashes from the leaf up to the root."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []

    def walk(m: int, start: int, end: int) -> None:
        n = end - start
        if n == 1:
            return
        k = largest_power_of_two_below(n)
        if m < k:
            walk(m, start, start + k)
            path.append(subtree(start + k, end))
        else:
            walk(m - k, start + k, end)
            path.append(subtree(start, start + k))

    walk(index, 0, size)
    return path


def consistency_path(first: int, second: int, subtree: SubtreeHash) -> list[bytes]:
    """RFC 9162 PROOF(first, D[0:second])."""
    if not 0 <= first <= second:
        raise ValueError(f"cannot prove consistency from size {first} to size {second}")
    if first == 0 or first == second:
        return []
    path: list[bytes] = []

    def sub(m: int, start: int, end: int, complete: bool) -> None:
        n = end - start
        if m == n:
            if not complete:
                path.append(subtree(start, end))
            return
        k = largest_power_of_two_below(n)
        if m <= k:
            sub(m, start, start + k, complete)
            path.append(subtree(start + k, end))
        else:
            sub(m - k, start + k, end, False)
            path.append(subtree(start, start + k))

    sub(first, 0, second, True)
    return path


def verify_inclusion(
    leaf_digest: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> None:
    """Verify an inclusion proof (RFC 9162 section 2.1.3.2); raise if it fails."""
    if index >= size or index < 0:
        raise InvalidInclusionProofError(f"leaf index {index} is not below tree size {size}")
    fn, sn = index, size - 1
    r = leaf_digest
    for p in path:
        if sn == 0:
            raise InvalidInclusionProofError(
                f"inclusion path is longer than a tree of size {size} allows"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidInclusionProofError(
            f"inclusion path is too short for leaf {index} in a tree of size {size}"
        )
    if r != root:
        raise InvalidInclusionProofError(
            f"inclusion proof leads to root {r.hex()}, expected {root.hex()}"
        )


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, path: Sequence[bytes]
) -> None:
    """Verify a consistency proof (RFC 9162 section 2.1.4.2); raise if it fails."""
    if not 0 <= first <= second:
        raise InvalidConsistencyProofError(f"first size {first} exceeds second size {second}")
    if first == second:
        if path:
            raise InvalidConsistencyProofError("proof between equal sizes must be empty")
        if first_root != second_root:
            raise InvalidConsistencyProofError(
                f"trees of equal size {first} have different roots "
                f"{first_root.hex()} and {second_root.hex()}"
            )
        return
    if first == 0:
        if path:
            raise InvalidConsistencyProofError("proof from the empty tree must be empty")
        return
    if not path:
        raise InvalidConsistencyProofError("consistency proof is empty")
    nodes = list(path)
    if first & (first - 1) == 0:  # first is an exact power of two
        nodes.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            raise InvalidConsistencyProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidConsistencyProofError("consistency proof is too short")
    if fr != first_root:
        raise InvalidConsistencyProofError(
            f"proof rebuilds first root {fr.hex()}, expected {first_root.hex()}"
        )
    if sr != second_root:
        raise InvalidConsistencyProofError(
            f"proof rebuilds second root {sr.hex()}, expected {second_root.hex()}"
        )


class RootAccumulator:
    """Roots of every prefix of a growing tree in one pass (a stack of perfect subtrees).

    After ``append`` of leaf number n-1, :meth:`root` is MTH(D[0:n]). Each perfect subtree
    completed by an append is passed to ``on_node(level, index, hash)`` so a caller can
    compare it with stored nodes. Amortised O(1) hashing per append; O(log n) per root.
    """

    def __init__(self, on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self._size = 0
        self._on_node = on_node

    @classmethod
    def resume(
        cls,
        size: int,
        subtree: Callable[[int, int], bytes],
        on_node: Callable[[int, int, bytes], None] | None = None,
    ) -> RootAccumulator:
        """An accumulator already holding ``size`` leaves, built from the perfect subtrees that
        cover them: ``subtree(level, index)`` is MTH of leaves [index * 2^level, (index + 1) *
        2^level), as the log stores it."""
        acc = cls(on_node)
        offset = 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                acc._stack.append((level, subtree(level, offset >> level)))
                offset += 1 << level
        acc._size = size
        return acc

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf_digest: bytes) -> None:
        index = self._size
        self._stack.append((0, leaf_digest))
        if self._on_node:
            self._on_node(0, index, leaf_digest)
        while len(self._stack) >= 2 and self._stack[-1][0] == self._stack[-2][0]:
            level, right = self._stack.pop()
            _, left = self._stack.pop()
            merged = node_hash(left, right)
            self._stack.append((level + 1, merged))
            if self._on_node:
                self._on_node(level + 1, index >> (level + 1), merged)
        self._size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        r = self._stack[-1][1]
        for _, h in reversed(self._stack[:-1]):
            r = node_hash(h, r)
        return r
