"""RFC 9162 Merkle tree: roots and proofs against an independent naive implementation
(the RFC's recursive definitions over lists, written separately here) and the
Certificate Transparency test vectors, for every tree of size 1–8 and for 1,000."""

from __future__ import annotations

import hashlib
import random

import pytest

from cmp.audit import merkle

# The eight leaves of the RFC 6962 / Certificate Transparency reference test suite.
CT_LEAVES = [
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
# Their roots for the trees of size 1..8, as published with that suite.
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


# --- naive RFC 9162 §2.1 definitions, straight from the text ---------------------------


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + d[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return sha(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True)


# --- tests ---------------------------------------------------------------------------


def getter(leaves: list[bytes]) -> merkle.Getter:
    return merkle.list_getter([merkle.leaf_hash(x) for x in leaves])


def test_hashing_prefixes_leaves_and_nodes() -> None:
    assert merkle.leaf_hash(b"abc") == sha(b"\x00abc")
    assert merkle.node_hash(b"L" * 32, b"R" * 32) == sha(b"\x01" + b"L" * 32 + b"R" * 32)
    assert merkle.tree_root(0, getter([])).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_ct_vector_roots(size: int) -> None:
    leaves = CT_LEAVES[:size]
    assert mth(leaves).hex() == CT_ROOTS[size - 1]
    assert merkle.tree_root(size, getter(leaves)).hex() == CT_ROOTS[size - 1]


def test_ct_vector_inclusion_path_by_hand() -> None:
    # Leaf 0 of the 8-leaf tree: sibling leaf 1, then MTH(leaves 2..3), then MTH(4..7).
    h = [merkle.leaf_hash(x) for x in CT_LEAVES]
    expected = [
        h[1],
        merkle.node_hash(h[2], h[3]),
        merkle.node_hash(merkle.node_hash(h[4], h[5]), merkle.node_hash(h[6], h[7])),
    ]
    assert merkle.inclusion_proof(0, 8, getter(CT_LEAVES)) == expected
    # Leaf 6 of the 7-leaf tree: the lone right leaf pairs with MTH(4..5), then MTH(0..3).
    expected7 = [
        merkle.node_hash(h[4], h[5]),
        merkle.node_hash(merkle.node_hash(h[0], h[1]), merkle.node_hash(h[2], h[3])),
    ]
    assert merkle.inclusion_proof(6, 7, getter(CT_LEAVES[:7])) == expected7


@pytest.mark.parametrize("size", range(1, 9))
def test_every_inclusion_proof_up_to_8(size: int) -> None:
    leaves = CT_LEAVES[:size]
    get = getter(leaves)
    root = mth(leaves)
    for i in range(size):
        got = merkle.inclusion_proof(i, size, get)
        assert got == path(i, leaves)
        leaf = merkle.leaf_hash(leaves[i])
        assert merkle.verify_inclusion(i, size, leaf, got, root)
        for j in range(size):  # the same proof never fits another index
            if j != i:
                assert not merkle.verify_inclusion(j, size, leaf, got, root)
        assert not merkle.verify_inclusion(i, size, merkle.leaf_hash(b"x"), got, root)


@pytest.mark.parametrize("new", range(1, 9))
def test_every_consistency_proof_up_to_8(new: int) -> None:
    leaves = CT_LEAVES[:new]
    get = getter(leaves)
    for old in range(1, new + 1):
        got = merkle.consistency_proof(old, new, get)
        if old == new:
            assert got == []
        else:
            assert got == proof(old, leaves)
        old_root, new_root = mth(leaves[:old]), mth(leaves)
        assert merkle.verify_consistency(old, new, old_root, new_root, got)
        assert not merkle.verify_consistency(old, new, sha(b"fork"), new_root, got)
        if old != new:
            assert not merkle.verify_consistency(old, new, old_root, sha(b"fork"), got)
            assert not merkle.verify_consistency(old, new, old_root, new_root, got[:-1])


def test_tree_of_1000_against_naive() -> None:
    rng = random.Random(1000)
    leaves = [rng.randbytes(rng.randrange(0, 40)) for _ in range(1000)]
    get = getter(leaves)
    assert merkle.tree_root(1000, get) == mth(leaves)
    for i in [*range(0, 1000, 37), 511, 512, 999]:
        got = merkle.inclusion_proof(i, 1000, get)
        assert got == path(i, leaves)
        assert merkle.verify_inclusion(i, 1000, merkle.leaf_hash(leaves[i]), got, mth(leaves))
    for old in (1, 2, 3, 255, 256, 257, 500, 512, 513, 999):
        got = merkle.consistency_proof(old, 1000, get)
        assert got == proof(old, leaves)
        assert merkle.verify_consistency(old, 1000, mth(leaves[:old]), mth(leaves), got)
    forked = [*leaves[:400], b"forged", *leaves[401:]]
    fork_proof = merkle.consistency_proof(500, 1000, getter(forked))
    assert not merkle.verify_consistency(500, 1000, mth(leaves[:500]), mth(forked), fork_proof)


def test_needed_names_only_complete_aligned_subtrees() -> None:
    size = 1000
    for index in (0, 999, 500):
        for level, n in merkle.needed(lambda g, i=index: merkle.inclusion_proof(i, size, g)):
            assert (n + 1) << level <= size
    reads = merkle.needed(lambda g: merkle.consistency_proof(300, size, g))
    assert len(reads) <= 2 * size.bit_length()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        merkle.inclusion_proof(3, 3, getter(CT_LEAVES[:3]))
    with pytest.raises(ValueError):
        merkle.consistency_proof(4, 3, getter(CT_LEAVES[:3]))
    assert not merkle.verify_inclusion(0, 0, b"\0" * 32, [], b"\0" * 32)
    assert not merkle.verify_consistency(2, 1, b"", b"", [])
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, mth(CT_LEAVES[:5]), [])
