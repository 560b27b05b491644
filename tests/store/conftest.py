"""Fixtures of the store tests: a migrated database of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from cmp.store.db import connect
from cmp.store.migrate import migrate


@pytest.fixture
async def fresh_dsn(fresh_database: Any) -> str:
    """A migrated database of this test's own (for tests that purge, drop months or
    roll up: they change what every other test would see)."""
    dsn: str = await fresh_database()
    conn = await connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return dsn


@pytest.fixture
async def fresh(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(fresh_dsn)
    yield conn
    await conn.close()
