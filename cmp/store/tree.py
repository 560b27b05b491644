"""The Merkle tree's storage: leaf bytes from the log, tiles, signed tree heads."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from cmp.audit.chain import disclosures_of
from cmp.audit.tiles import TileKey
from cmp.store.recordtext import record_text
from cmp.store.sqlfiles import queries

SQL = queries("tree")


@dataclass(frozen=True, slots=True)
class Leaf:
    seq: int
    prev_hash: str
    hash: str
    received_at: datetime
    data: bytes  # canonical JSON of the record: the leaf's bytes


@dataclass(frozen=True, slots=True)
class TreeHead:
    size: int
    root: bytes
    chain_hash: str | None
    note: str
    signed_at: str


def _leaf(row: asyncpg.Record) -> Leaf:
    text = record_text(row["head"], row["purposes"], row["middle"], row["services"], row["tail"])
    return Leaf(row["seq"], row["prev_hash"], row["hash"], row["received_at"], text.encode())


async def select_leaves(
    conn: asyncpg.Connection, site_id: str, after_seq: int, limit: int
) -> list[Leaf]:
    return [_leaf(r) for r in await conn.fetch(SQL["select_leaves"], site_id, after_seq, limit)]


async def select_receipt_record(
    conn: asyncpg.Connection, site_id: str, event_id: uuid.UUID, digest: str
) -> tuple[Leaf, dict[str, dict[str, str]]] | None:
    """The record's leaf and its disclosures (`cmp.audit.chain.disclosures_of`); None when
    the pair names no record of a subject that is not erased."""
    row = await conn.fetchrow(SQL["select_receipt_record"], site_id, event_id, digest)
    if row is None:
        return None
    return _leaf(row), disclosures_of(orjson.loads(record_text(*row["row_parts"])))


async def select_sites_to_integrate(conn: asyncpg.Connection) -> list[str]:
    return [r["site_id"] for r in await conn.fetch(SQL["select_sites_to_integrate"])]


@dataclass(frozen=True, slots=True)
class IntegratedTree:
    """How far a site's tree has integrated its log: size, root, chain hash at that size."""

    size: int
    root: bytes
    chain_hash: str


async def select_tree(conn: asyncpg.Connection, site_id: str) -> IntegratedTree | None:
    row = await conn.fetchrow(SQL["select_tree"], site_id)
    return IntegratedTree(row["size"], bytes(row["root"]), row["chain_hash"]) if row else None


async def upsert_tree(conn: asyncpg.Connection, site_id: str, tree: IntegratedTree) -> None:
    await conn.execute(SQL["upsert_tree"], site_id, tree.size, tree.root, tree.chain_hash)


def _tree_head(row: asyncpg.Record | None) -> TreeHead | None:
    if row is None:
        return None
    return TreeHead(
        row["size"], bytes(row["root"]), row["chain_hash"], row["note"], row["signed_at"]
    )


async def select_latest_tree_head(conn: asyncpg.Connection, site_id: str) -> TreeHead | None:
    return _tree_head(await conn.fetchrow(SQL["select_latest_tree_head"], site_id))


async def tree_covers(conn: asyncpg.Connection, site_id: str, seq: int) -> bool:
    """Whether the site's tree holds the records through ``seq``."""
    tree = await select_tree(conn, site_id)
    return tree is not None and tree.size >= seq


async def select_tree_head_at(conn: asyncpg.Connection, site_id: str, size: int) -> TreeHead | None:
    return _tree_head(await conn.fetchrow(SQL["select_tree_head_at"], site_id, size))


async def update_latest_tree_head(
    conn: asyncpg.Connection,
    site_id: str,
    size: int,
    root: bytes,
    chain_hash: str | None,
    note: str,
) -> None:
    await conn.execute(SQL["update_latest_tree_head"], site_id, size, root, chain_hash, note)


async def select_last_kept_at(conn: asyncpg.Connection, site_id: str) -> datetime | None:
    found: datetime | None = await conn.fetchval(SQL["select_last_kept_at"], site_id)
    return found


async def insert_tree_head(
    conn: asyncpg.Connection,
    site_id: str,
    size: int,
    root: bytes,
    chain_hash: str | None,
    note: str,
) -> None:
    await conn.execute(SQL["insert_tree_head"], site_id, size, root, chain_hash, note)


async def select_tiles(
    conn: asyncpg.Connection, site_id: str, keys: Iterable[TileKey]
) -> dict[TileKey, bytes]:
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await conn.fetch(
        SQL["select_tiles"], site_id, [k[0] for k in wanted], [k[1] for k in wanted]
    )
    return {(r["level"], r["idx"]): bytes(r["hashes"]) for r in rows}


async def upsert_tiles(
    conn: asyncpg.Connection, site_id: str, tiles: Mapping[TileKey, bytes]
) -> None:
    keys = sorted(tiles)
    await conn.execute(
        SQL["upsert_tiles"],
        site_id,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [tiles[k] for k in keys],
    )
