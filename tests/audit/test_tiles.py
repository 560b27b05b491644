"""Tiles: appending in pieces gives the tiles of appending at once, and every node read
from tiles equals the node computed from all leaves."""

from __future__ import annotations

import hashlib

from cmp.audit import merkle, tiles


def leaves(n: int, start: int = 0) -> list[bytes]:
    return [merkle.leaf_hash(str(i).encode()) for i in range(start, start + n)]


def grow(sizes: list[int]) -> tuple[int, dict[tiles.TileKey, bytes]]:
    store: dict[tiles.TileKey, bytes] = {}
    size = 0
    for step in sizes:
        edges = {k: store[k] for k in tiles.edge_tiles(size)}
        size, changed = tiles.append(size, edges, leaves(step, size))
        for key, data in changed.items():
            old = store.get(key, b"")
            assert data.startswith(old)  # tiles only grow
            store[key] = data
    return size, store


def test_tile_layout_of_a_tree_past_two_levels() -> None:
    size, store = grow([70_000])
    assert size == 70_000
    assert len(store[(0, 0)]) == tiles.TILE_BYTES
    assert len(store[(0, 273)]) == (70_000 - 273 * 256) * 32
    # 273 level-8 hashes (one per full level-0 tile): a full level-1 tile and 17 more.
    assert len(store[(1, 0)]) == tiles.TILE_BYTES
    assert len(store[(1, 1)]) == 17 * 32
    assert len(store[(2, 0)]) == 32  # the first 65,536 leaves
    assert store[(1, 0)][:32] == merkle.fold(leaves(256))
    assert store[(2, 0)] == merkle.tree_root(65_536, merkle.list_getter(leaves(65_536)))
    assert tiles.edge_tiles(70_000) == [(0, 273), (1, 1), (2, 0)]


def test_appending_in_pieces_equals_appending_at_once() -> None:
    pieces = [1, 255, 1, 300, 7, 512, 1000, 3]
    size, store = grow(pieces)
    size2, store2 = grow([sum(pieces)])
    assert (size, store) == (size2, store2)


def test_nodes_from_tiles_match_the_tree() -> None:
    size, store = grow([3, 600, 1100, 397])
    everything = leaves(size)
    by_list = merkle.list_getter(everything)

    def from_tiles(level: int, index: int) -> bytes:
        return tiles.node_from(store, level, index)

    assert merkle.tree_root(size, from_tiles) == merkle.tree_root(size, by_list)
    for old in (1, 255, 256, 257, 1000, size - 1):
        assert merkle.tree_root(old, from_tiles) == merkle.tree_root(old, by_list)
        assert merkle.consistency_proof(old, size, from_tiles) == merkle.consistency_proof(
            old, size, by_list
        )
    for index in (0, 255, 256, 1023, size - 1):
        assert merkle.inclusion_proof(index, size, from_tiles) == merkle.inclusion_proof(
            index, size, by_list
        )


def test_a_proof_touches_one_tile_per_eight_levels_at_most() -> None:
    size = 1 << 20
    for index in (0, 12345, size - 1):
        nodes = merkle.needed(lambda g, i=index: merkle.inclusion_proof(i, size, g))
        assert len(tiles.tiles_for(nodes)) <= 2 * (20 // tiles.HEIGHT + 1)


def test_fold_of_a_full_tile_is_the_subtree_root() -> None:
    hs = leaves(256)
    expected = hs
    while len(expected) > 1:
        expected = [
            hashlib.sha256(b"\x01" + expected[i] + expected[i + 1]).digest()
            for i in range(0, len(expected), 2)
        ]
    assert merkle.fold(hs) == expected[0]
