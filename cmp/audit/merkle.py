"""RFC 9162 §2.1 Merkle trees: hashing, roots, inclusion and consistency proofs.

Pure functions, no I/O. Proof construction reads the hashes of complete, aligned
subtrees through a ``get(level, index)`` callable (``level`` 0 = leaf hashes), so the
same code serves an in-memory list and the tile store; ``needed`` runs a construction
with a recording getter first, which tells the store which hashes to fetch in one
read. Verification follows the RFC's algorithms (§2.1.3.2 and §2.1.4.2) word for word,
so a proof that passes here passes any RFC 9162 / RFC 6962 verifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Final

HASH_SIZE: Final = 32
Getter = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT: Final = hashlib.sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(lo: int, hi: int, get: Getter) -> bytes:
    """MTH of leaves [lo, hi), built from complete aligned subtrees read by ``get``."""
    n = hi - lo
    if n <= 0:
        raise ValueError("empty range")
    if n & (n - 1) == 0 and lo % n == 0:
        level = n.bit_length() - 1
        return get(level, lo >> level)
    k = _split(n)
    return node_hash(subtree_hash(lo, lo + k, get), subtree_hash(lo + k, hi, get))


def tree_root(size: int, get: Getter) -> bytes:
    return EMPTY_ROOT if size == 0 else subtree_hash(0, size, get)


def inclusion_proof(index: int, size: int, get: Getter) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[size]), bottom-up."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    lo, hi = 0, size
    pending: list[bytes] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            pending.append(subtree_hash(lo + k, hi, get))
            hi = lo + k
        else:
            pending.append(subtree_hash(lo, lo + k, get))
            lo = lo + k
    return list(reversed(pending))


def consistency_proof(old: int, new: int, get: Getter) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(old, D[new]); empty when old is 0 or old == new."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    if old == 0 or old == new:
        return []
    pending: list[bytes] = []
    lo, hi, m, whole = 0, new, old, True
    while True:
        n = hi - lo
        if m == n:
            if not whole:
                pending.append(subtree_hash(lo, hi, get))
            break
        k = _split(n)
        if m <= k:
            pending.append(subtree_hash(lo + k, hi, get))
            hi = lo + k
        else:
            pending.append(subtree_hash(lo, lo + k, get))
            lo, m, whole = lo + k, m - k, False
    return list(reversed(pending))


def needed(build: Callable[[Getter], object]) -> list[tuple[int, int]]:
    """The (level, index) hashes that ``build`` reads, in the order it reads them."""
    seen: list[tuple[int, int]] = []

    def record(level: int, index: int) -> bytes:
        seen.append((level, index))
        return bytes(HASH_SIZE)

    build(record)
    return seen


def list_getter(leaf_hashes: Sequence[bytes]) -> Getter:
    """A getter over all leaf hashes in memory (tests, small trees): O(2^level) a call."""

    def get(level: int, index: int) -> bytes:
        lo = index << level
        return fold(list(leaf_hashes[lo : lo + (1 << level)]))

    return get


def fold(hashes: list[bytes]) -> bytes:
    """Root of a power-of-two run of hashes (a complete subtree from its bottom row)."""
    while len(hashes) > 1:
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show leaf hash ``leaf`` at ``index`` under ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_SIZE or sn == 0:
            return False
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
    return sn == 0 and r == root


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show the tree (new, new_root) extends (old, old_root)?"""
    if not 0 <= old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof  # every tree extends the empty one
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        return False
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
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
    return fr == old_root and sr == new_root and sn == 0
