"""The Merkle tree stored as tiles of hashes, in the layout of C2SP tlog-tiles.

A tile at level L, index N holds up to 256 consecutive hashes of tree level 8·L:
those with node indexes N·256 … N·256+255. Level-0 tiles hold leaf hashes; the hash
of a full tile (its 256 hashes folded up eight levels) is the next entry of the tile
above. Every other node of the tree is folded from a run of at most 128 hashes of one
tile, so the root or a proof reads one tile per eight tree levels it touches: O(log N).
The rightmost tile of each level is partial and grows in place; the hashes already in
a tile never change (the store refuses an update that would change them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from cmp.audit.merkle import HASH_SIZE, fold

HEIGHT: Final = 8
WIDTH: Final = 1 << HEIGHT
TILE_BYTES: Final = WIDTH * HASH_SIZE

TileKey = tuple[int, int]  # (tile level, tile index)


def locate(level: int, index: int) -> tuple[TileKey, int, int]:
    """Where node (level, index) lives: its tile, and the run [start, start+count) in it."""
    tile_level, up = divmod(level, HEIGHT)
    first = index << up
    return (tile_level, first >> HEIGHT), first & (WIDTH - 1), 1 << up


def tiles_for(nodes: Iterable[tuple[int, int]]) -> set[TileKey]:
    return {locate(level, index)[0] for level, index in nodes}


def node_from(tiles: Mapping[TileKey, bytes], level: int, index: int) -> bytes:
    """The hash of complete node (level, index), folded from its tile."""
    key, start, count = locate(level, index)
    data = tiles[key]
    if len(data) < (start + count) * HASH_SIZE:
        raise LookupError(f"tile {key} holds {len(data) // HASH_SIZE} hashes, node needs more")
    return fold([data[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(start, start + count)])


def edge_tiles(size: int) -> list[TileKey]:
    """The partial tiles of a tree of ``size`` leaves (the ones an append extends)."""
    keys = []
    level, count = 0, size
    while count:
        if count % WIDTH:
            keys.append((level, count // WIDTH))
        level, count = level + 1, count // WIDTH
    return keys


def append(
    size: int, edges: Mapping[TileKey, bytes], leaf_hashes: Iterable[bytes]
) -> tuple[int, dict[TileKey, bytes]]:
    """Add leaves to a tree of ``size`` whose partial tiles are ``edges``.

    Returns the new size and every tile that changed or appeared (whole content).
    """
    counts: list[int] = []  # hashes at level 8·L so far, per tile level L
    count = size
    while count:
        counts.append(count)
        count //= WIDTH
    buffers: dict[int, bytearray] = {}
    for level, n in enumerate(counts):
        if n % WIDTH:
            data = edges[(level, n // WIDTH)]
            if len(data) != (n % WIDTH) * HASH_SIZE:
                raise ValueError(f"edge tile at level {level} has the wrong width")
            buffers[level] = bytearray(data)
    dirty: dict[TileKey, bytearray] = {}

    def push(level: int, digest: bytes) -> None:
        while True:
            if level == len(counts):
                counts.append(0)
            buf = buffers.setdefault(level, bytearray())
            buf += digest
            dirty[(level, counts[level] // WIDTH)] = buf
            counts[level] += 1
            if len(buf) < TILE_BYTES:
                return
            digest = fold([bytes(buf[i : i + HASH_SIZE]) for i in range(0, TILE_BYTES, HASH_SIZE)])
            buffers[level] = bytearray()  # the full tile keeps the old buffer
            level += 1

    added = 0
    for digest in leaf_hashes:
        push(0, digest)
        added += 1
    return size + added, {key: bytes(buf) for key, buf in dirty.items()}
