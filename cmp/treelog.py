"""The Merkle tree over each site's log: integration after commit, signed heads, proofs.

A background task in every server process integrates new records into the tree —
one process at a time (a PostgreSQL advisory lock), never in the request path — and
signs a C2SP checkpoint for each new size. Every leaf is checked against the stored
chain hash before it goes in, so the tree holds exactly the bytes the chain covers.
`TreeLog` serves heads, proofs and receipts to the API from the stored tiles.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import orjson

from cmp.audit import merkle, notes, tiles
from cmp.audit.chain import GENESIS
from cmp.audit.signing import Signer
from cmp.ratelimit import RateLimiter
from cmp.store import tree as tree_store
from cmp.store.coordination import TREE_LOCK, try_lock, wait_lock
from cmp.store.db import DB_ERRORS, db_error_text
from cmp.store.tree import IntegratedTree, Leaf, TreeHead

log = logging.getLogger(__name__)

# Records per integration transaction: bounds its memory (the step's rows are the
# worker's largest allocation on a backlog: loadtest/README.md), its lock time and how
# long one step holds the event loop (the hashing is CPU work).
CHUNK = 1_000
# On-demand tree heads for sizes nobody signed yet: per site, a few a second.
ON_DEMAND_RATE, ON_DEMAND_BURST = 5.0, 20

# How often a growing log's checkpoint is also kept (the newest one is always at hand).
KEEP_EVERY = timedelta(minutes=1)

T = TypeVar("T")


class TreeIntegrityError(Exception):
    """The log cannot be integrated: a record does not match its chain hash or is gone."""


async def integrate_site(
    conn: asyncpg.Connection,
    site_id: str,
    signer: Signer | None = None,
    origin: str | None = None,
    observe: Callable[[float], None] | None = None,
    *,
    wait: bool = False,
) -> int:
    """Integrate up to CHUNK new records of one site into its tree; returns how many.

    With a signer (and the site's origin), also sign a checkpoint for the tree's size
    when it has none yet. One transaction under the tree lock: 0 when another process
    holds it, unless ``wait``.
    """
    async with conn.transaction():
        if wait:
            await wait_lock(conn, TREE_LOCK)
        elif not await try_lock(conn, TREE_LOCK):
            return 0
        tree = await tree_store.select_tree(conn, site_id) or IntegratedTree(
            0, merkle.EMPTY_ROOT, GENESIS
        )
        leaves = await tree_store.select_leaves(conn, site_id, tree.size, CHUNK)
        if leaves:
            _check_chain(site_id, tree.size, tree.chain_hash, leaves)
            edges = await tree_store.select_tiles(conn, site_id, tiles.edge_tiles(tree.size))
            size, changed = tiles.append(
                tree.size, edges, (merkle.leaf_hash(x.data) for x in leaves)
            )
            await tree_store.upsert_tiles(conn, site_id, changed)
            root = await _build(
                conn, site_id, lambda get: merkle.tree_root(size, get), {**edges, **changed}
            )
            tree = IntegratedTree(size, root, leaves[-1].hash)
            await tree_store.upsert_tree(conn, site_id, tree)
        if signer is not None and origin is not None and tree.size > 0:
            latest = await tree_store.select_latest_tree_head(conn, site_id)
            if latest is None or latest.size < tree.size:
                note = notes.sign_checkpoint(signer, origin, tree.size, tree.root)
                args = (site_id, tree.size, tree.root, tree.chain_hash, note)
                await tree_store.update_latest_tree_head(conn, *args)
                kept = await tree_store.select_last_kept_at(conn, site_id)
                if kept is None or datetime.now(UTC) - kept >= KEEP_EVERY:
                    await tree_store.insert_tree_head(conn, *args)
                if observe is not None and leaves:
                    observe((datetime.now(UTC) - leaves[0].received_at).total_seconds())
    return len(leaves)


def _check_chain(site_id: str, size: int, prev: str, leaves: list[Leaf]) -> None:
    expected = size + 1
    for leaf in leaves:
        if leaf.seq != expected:
            raise TreeIntegrityError(
                f"site {site_id}: record seq {expected} is missing (purged before it was "
                "integrated?); the tree cannot go past it"
            )
        if leaf.prev_hash != prev or (
            hashlib.sha256(prev.encode("ascii") + leaf.data).hexdigest() != leaf.hash
        ):
            raise TreeIntegrityError(
                f"site {site_id}: record seq {leaf.seq} does not match its chain hash"
            )
        prev, expected = leaf.hash, expected + 1


async def _build(
    conn: asyncpg.Connection,
    site_id: str,
    build: Callable[[merkle.Getter], T],
    known: dict[tiles.TileKey, bytes] | None = None,
) -> T:
    """Run a tree computation on hashes read from tiles: one query for all it needs."""
    known = dict(known or {})
    wanted = tiles.tiles_for(merkle.needed(build)) - known.keys()
    known.update(await tree_store.select_tiles(conn, site_id, wanted))
    return build(lambda level, index: tiles.node_from(known, level, index))


async def integrate_all(
    conn: asyncpg.Connection,
    signer: Signer,
    public_host: str,
    observe: Callable[[float], None] | None = None,
    broken: set[str] | None = None,
) -> int:
    """Bring every site's tree up to its chain head and sign it; returns the records
    integrated. A site whose log cannot be integrated is logged (once) and skipped."""
    total = 0
    for site_id in await tree_store.select_sites_to_integrate(conn):
        origin = notes.origin_of(public_host, site_id)
        while True:
            try:
                done = await integrate_site(conn, site_id, signer, origin, observe)
            except TreeIntegrityError as exc:
                if broken is None or site_id not in broken:
                    log.error("transparency log: %s", exc)
                if broken is not None:
                    broken.add(site_id)
                break
            total += done
            if done < CHUNK:
                break
    return total


async def integrate_through(conn: asyncpg.Connection, site_id: str, seq: int) -> bool:
    """Build the site's tree through ``seq`` (no signing); False if it cannot get there.

    The retention purge calls this first: a purged record keeps its leaf only if it was
    integrated before it was deleted.
    """
    while not await tree_store.tree_covers(conn, site_id, seq):
        try:
            if await integrate_site(conn, site_id, wait=True) == 0:
                return await tree_store.tree_covers(conn, site_id, seq)
        except TreeIntegrityError as exc:
            log.error("transparency log: %s", exc)
            return False
    return True


async def run_integration(
    pool: asyncpg.Pool,
    signer: Signer,
    public_host: str,
    *,
    every: float,
    observe: Callable[[float], None] | None = None,
) -> None:
    """The background loop of a server process; survives database outages."""
    broken: set[str] = set()
    while True:
        await asyncio.sleep(every)
        try:
            async with pool.acquire() as conn:
                await integrate_all(conn, signer, public_host, observe, broken)
        except DB_ERRORS as exc:
            log.warning("transparency log integration skipped: %s", db_error_text(exc))


# --- reading: heads, proofs, receipts ---------------------------------------------------


class NotIntegrated(Exception):
    """The size or record asked for is not in a signed tree head yet."""

    def __init__(self, message: str, latest: int) -> None:
        super().__init__(message)
        self.latest = latest


class TooManyTreeHeads(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("too many on-demand checkpoints")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Receipt:
    record: dict[str, Any]
    leaf_index: int
    checkpoint: str
    inclusion_proof: list[bytes]
    disclosures: dict[str, dict[str, str]]


class TreeLog:
    """Signed tree heads, proofs and receipts for the API, from the stored tiles."""

    def __init__(self, pool: asyncpg.Pool, signer: Signer, public_host: str) -> None:
        self._pool = pool
        self._signer = signer
        self.public_host = public_host
        self._limiter = RateLimiter(ON_DEMAND_RATE, ON_DEMAND_BURST)

    def origin(self, site_id: str) -> str:
        return notes.origin_of(self.public_host, site_id)

    async def latest(self, site_id: str) -> TreeHead | None:
        async with self._pool.acquire() as conn:
            return await tree_store.select_latest_tree_head(conn, site_id)

    async def _tree_head_at(self, conn: asyncpg.Connection, site_id: str, size: int) -> TreeHead:
        """The signed tree head at ``size``: stored, or signed now (rate-limited, then kept)."""
        found = await tree_store.select_tree_head_at(conn, site_id, size)
        if found is not None:
            return found
        latest = await tree_store.select_latest_tree_head(conn, site_id)
        top = latest.size if latest else 0
        if size > top:
            raise NotIntegrated(f"size {size} is beyond the signed tree (size {top})", top)
        wait = self._limiter.take(site_id, "tree-heads")
        if wait:
            raise TooManyTreeHeads(wait)
        root = await _build(conn, site_id, lambda get: merkle.tree_root(size, get))
        note = notes.sign_checkpoint(self._signer, self.origin(site_id), size, root)
        await tree_store.insert_tree_head(conn, site_id, size, root, None, note)
        stored = await tree_store.select_tree_head_at(conn, site_id, size)
        assert stored is not None
        return stored

    async def inclusion(self, site_id: str, index: int, size: int) -> tuple[TreeHead, list[bytes]]:
        async with self._pool.acquire() as conn:
            tree_head = await self._tree_head_at(conn, site_id, size)
            proof = await _build(conn, site_id, lambda g: merkle.inclusion_proof(index, size, g))
        return tree_head, proof

    async def consistency(
        self, site_id: str, old: int, new: int
    ) -> tuple[TreeHead, TreeHead, list[bytes]]:
        async with self._pool.acquire() as conn:
            new_tree_head = await self._tree_head_at(conn, site_id, new)
            old_tree_head = await self._tree_head_at(conn, site_id, old)
            proof = await _build(conn, site_id, lambda g: merkle.consistency_proof(old, new, g))
        return old_tree_head, new_tree_head, proof

    async def receipt(self, site_id: str, event_id: uuid.UUID, digest: str) -> Receipt | None:
        """The visitor's receipt; None when the pair does not name a record.

        Raises NotIntegrated while the record is not in a signed tree head yet.
        """
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            found = await tree_store.select_receipt_record(conn, site_id, event_id, digest)
            if found is None:
                return None
            leaf, disclosures = found
            latest = await tree_store.select_latest_tree_head(conn, site_id)
            top = latest.size if latest else 0
            if latest is None or latest.size < leaf.seq:
                raise NotIntegrated("the record is not in a signed checkpoint yet", top)
            index, size = leaf.seq - 1, latest.size
            proof = await _build(conn, site_id, lambda g: merkle.inclusion_proof(index, size, g))
        return Receipt(orjson.loads(leaf.data), index, latest.note, proof, disclosures)
