"""Forward-only migrations: numbered SQL files, a `schema_migrations` table, an advisory lock.

Several processes starting at once take turns on the lock; each file runs in its own
transaction. A database that has migrations this code does not know is refused.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

import asyncpg

from cmp.store import impressions as impressions_store
from cmp.store.coordination import MIGRATION_LOCK, lock_session, unlock_session
from cmp.store.events import make_partitions_ahead
from cmp.store.sqlfiles import function_files, migration_files, queries

log = logging.getLogger(__name__)

SQL = queries("migrations")


class SchemaAheadError(Exception):
    """The database carries migrations that this code does not know."""


async def applied_versions(conn: asyncpg.Connection) -> list[int]:
    if not await conn.fetchval(SQL["select_migrations_table_exists"]):
        return []
    rows = await conn.fetch(SQL["select_applied_migrations"])
    return [r["version"] for r in rows]


async def schema_status(conn: asyncpg.Connection) -> tuple[list[int], list[int]]:
    """(missing, unknown): migrations not yet applied, and applied ones the code lacks."""
    known = {number for number, _, _ in migration_files()}
    applied = set(await applied_versions(conn))
    return sorted(known - applied), sorted(applied - known)


async def stale_functions(conn: asyncpg.Connection) -> list[str]:
    """The `sql/functions/` files whose text the database does not hold as applied (new
    code whose functions `cmpd migrate` has not applied yet)."""
    if not await conn.fetchval(SQL["select_functions_table_exists"]):
        return [path.name for path in function_files()]
    applied = {r["name"]: r["sha256"] for r in await conn.fetch(SQL["select_function_digests"])}
    return [path.name for path in function_files() if applied.get(path.name) != _digest(path)]


def _digest(path: Path) -> str:
    """A function file's sha256, read again only when the file changed (/readyz asks on
    every probe)."""
    stat = path.stat()
    return _file_digest(path, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every pending migration; return the names applied."""
    await lock_session(conn, MIGRATION_LOCK)
    try:
        await conn.execute(SQL["create_migrations_table"])
        missing, unknown = await schema_status(conn)
        if unknown:
            raise SchemaAheadError(
                f"database has migrations {unknown} that this version of cmp does not know; "
                "upgrade cmp before starting it"
            )
        done = []
        for number, name, path in migration_files():
            if number not in missing:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text("utf-8"))
                await conn.execute(SQL["insert_applied_migration"], number, name)
            log.info("applied migration %s", name)
            done.append(name)
        # After a migration every file is applied again: one that dropped a type or a
        # table (CASCADE) may have taken functions with it.
        done += await apply_functions(conn, every=bool(done))
        # The log's coming months and the impressions' coming days: the maintenance
        # task keeps them up to date after.
        await make_partitions_ahead(conn)
        await impressions_store.make_partitions_ahead(conn)
        return done
    finally:
        await unlock_session(conn, MIGRATION_LOCK)


async def apply_functions(conn: asyncpg.Connection, *, every: bool = False) -> list[str]:
    """(Re)define the functions of every `sql/functions/` file whose text changed since it
    was last applied, or of every file (`every`); the caller holds the migration lock.
    Returns the names applied.

    Migrations keep the schema's history; these files are each function's one live
    definition, so a reader finds today's `cmp_append` in one place. Bodies are not
    checked at creation (as pg_dump restores them): a LANGUAGE sql function may call one
    of a file that sorts after its own, so files are named by concern, not by
    dependency; tests/store/test_functions.py checks every body instead.
    """
    await conn.execute(SQL["create_functions_table"])
    applied = {r["name"]: r["sha256"] for r in await conn.fetch(SQL["select_function_digests"])}
    done = []
    for path in function_files():
        digest = _digest(path)
        if applied.get(path.name) == digest and not every:
            continue
        text = path.read_text("utf-8")
        async with conn.transaction():
            await conn.execute(SQL["set_local_no_body_checks"])
            await conn.execute(text)
            await conn.execute(SQL["upsert_function_digest"], path.name, digest)
        log.info("applied functions %s", path.name)
        done.append(path.name)
    return done
