"""The migration runner on real, fresh databases."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from cmp.store.migrate import SchemaAheadError, migrate, schema_status
from cmp.store.sqlfiles import migration_files


async def test_fresh_database_gets_every_migration_then_rerun_is_a_noop(
    fresh_database: Any,
) -> None:
    conn = await asyncpg.connect(await fresh_database())
    try:
        applied = await migrate(conn)
        assert applied == [name for _, name, _ in migration_files()]
        assert await migrate(conn) == []
        assert await schema_status(conn) == ([], [])
    finally:
        await conn.close()


async def test_concurrent_runners_take_turns(fresh_database: Any) -> None:
    dsn = await fresh_database()
    conns = [await asyncpg.connect(dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, 0, len(migration_files())]
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(migration_files())
    finally:
        for c in conns:
            await c.close()


async def test_database_ahead_of_code_is_refused(fresh_database: Any) -> None:
    conn = await asyncpg.connect(await fresh_database())
    try:
        await migrate(conn)
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')")
        with pytest.raises(SchemaAheadError, match="9999"):
            await migrate(conn)
        assert (await schema_status(conn))[1] == [9999]
    finally:
        await conn.close()
