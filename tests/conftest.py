"""Shared fixtures: a real PostgreSQL (embedded by default, or CMP_TEST_DATABASE_URL),
one fresh database per test session, the app behind aiohttp's real test server.

Tests isolate by data, not by rollback: each test makes its own sites (random ids),
because the app commits through its own pool and group committer, as in production.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from cmp.app import create_app
from cmp.config import Settings
from cmp.store.db import connect
from cmp.store.keys import ensure_root_key
from cmp.store.migrate import migrate
from tests.factories import ADMIN_KEY, ROOT, with_database


def _server_dsn() -> str:
    url = os.environ.get("CMP_TEST_DATABASE_URL")
    if url:
        return url
    from cmp.store.db import start_embedded

    server = start_embedded(ROOT / ".data" / "test")
    pytest.embedded_server = server  # type: ignore[attr-defined]  # kept alive for the session
    return str(server.get_uri())


@pytest.fixture(scope="session")
def server_dsn() -> str:
    return _server_dsn()


@pytest.fixture(scope="session")
async def fresh_database(server_dsn: str) -> AsyncIterator[Any]:
    """A factory of empty databases on the test server, dropped at the end."""
    made: list[str] = []

    async def make() -> str:
        name = f"cmp_test_{secrets.token_hex(6)}"
        conn = await asyncpg.connect(server_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        made.append(name)
        return with_database(server_dsn, name)

    yield make
    conn = await asyncpg.connect(server_dsn)
    try:
        for name in made:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def db_dsn(fresh_database: Any) -> str:
    """The session's migrated database with the root admin key installed."""
    dsn: str = await fresh_database()
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await ensure_root_key(conn, ADMIN_KEY)
    finally:
        await conn.close()
    return dsn


@pytest.fixture
def settings(db_dsn: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=SecretStr(db_dsn),
        data_dir=tmp_path,
        admin_key=SecretStr(ADMIN_KEY),
        rate_per_second=1000,
        rate_burst=1000,
    )


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, db_dsn: str) -> TestClient:
    app = create_app(settings, db_dsn)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(db_dsn)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
async def own_postgres() -> AsyncIterator[Any]:
    """A PostgreSQL of its own for the tests that stop or crash it (tests/own_postgres.py)."""
    from tests.own_postgres import OwnPostgres

    server = OwnPostgres("own")
    await server.drop_databases()
    yield server
    await server.drop_databases()
