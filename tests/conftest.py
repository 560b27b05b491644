"""Shared fixtures: a real PostgreSQL (embedded by default, or CMP_TEST_DATABASE_URL),
one fresh database per test session, the app behind aiohttp's real test server.

Tests isolate by data, not by rollback: each test makes its own sites (random ids),
because the app commits through its own pool and group committer, as in production.
"""

from __future__ import annotations

import os
import secrets
import uuid
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

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "cmp_live_root_" + "t" * 43
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ORIGIN = "https://shop.example"


def _server_dsn() -> str:
    url = os.environ.get("CMP_TEST_DATABASE_URL")
    if url:
        return url
    from cmp.store.db import start_embedded

    server = start_embedded(ROOT / ".data" / "test")
    pytest.embedded_server = server  # type: ignore[attr-defined]  # kept alive for the session
    return str(server.get_uri())


def with_database(dsn: str, name: str) -> str:
    """The same server, another database."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


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


# --- data helpers ------------------------------------------------------------------


def policy_body(
    material: bool = True, languages: tuple[str, ...] = ("nb", "en"), extra_purpose: bool = False
) -> dict[str, Any]:
    def t(word: str) -> dict[str, str]:
        return {lang: f"{word} ({lang})" for lang in languages}

    purposes: list[dict[str, Any]] = [
        {
            "key": "necessary",
            "required": True,
            "consent_mode": ["security_storage"],
            "title": t("Necessary"),
            "services": [
                {
                    "key": "session",
                    "name": "Session cookie",
                    "cookies": ["sid"],
                    "retention_days": 0,
                }
            ],
        },
        {
            "key": "preferences",
            "consent_mode": ["functionality_storage", "personalization_storage"],
            "title": t("Preferences"),
        },
        {
            "key": "statistics",
            "consent_mode": ["analytics_storage"],
            "title": t("Statistics"),
            "services": [
                {
                    "key": "google-analytics",
                    "name": "Google Analytics",
                    "cookies": ["_ga", "_ga_*"],
                    "retention_days": 730,
                }
            ],
        },
        {
            "key": "marketing",
            "gpc": True,
            "consent_mode": ["ad_storage", "ad_user_data", "ad_personalization"],
            "title": t("Marketing"),
            "services": [{"key": "facebook-pixel", "name": "Facebook pixel", "cookies": ["_fbp"]}],
        },
    ]
    if extra_purpose:
        purposes.append({"key": "social", "title": t("Social"), "consent_mode": []})
    return {
        "material": material,
        "policy_url": "https://shop.example/personvern",
        "purposes": purposes,
        "texts": {
            lang: {
                "title": "Cookies",
                "body": "Vi bruker informasjonskapsler.",
                "accept_all": "Godta alle",
                "reject_all": "Avvis alle",
                "settings": "Innstillinger",
                "save": "Lagre",
            }
            for lang in languages
        },
    }


def site_body(languages: tuple[str, ...] = ("nb", "en"), **extra: Any) -> dict[str, Any]:
    return {
        "name": "Test shop",
        "origins": [ORIGIN],
        "languages": list(languages),
        "default_language": languages[0],
        **extra,
    }


def new_site_id() -> str:
    return f"t-{secrets.token_hex(5)}"


async def make_site(client: TestClient, *, policy: bool = True, **extra: Any) -> str:
    site_id = new_site_id()
    r = await client.put(f"/v1/sites/{site_id}", json=site_body(**extra), headers=ADMIN)
    assert r.status == 201, await r.text()
    if policy:
        r = await client.post(f"/v1/sites/{site_id}/policies", json=policy_body(), headers=ADMIN)
        assert r.status == 201, await r.text()
    return site_id


async def make_key(client: TestClient, site_id: str, scope: str) -> dict[str, str]:
    r = await client.post(f"/v1/sites/{site_id}/keys", json={"scope": scope}, headers=ADMIN)
    assert r.status == 201, await r.text()
    return {"Authorization": f"Bearer {(await r.json())['key']}"}


def event(subject_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "subject_id": subject_id or str(uuid.uuid4()),
        "policy_version": 1,
        "action": "accept_all",
    }
    body.update(fields)
    return body


@pytest.fixture(scope="session")
async def own_postgres() -> AsyncIterator[Any]:
    """A PostgreSQL of its own for the tests that stop or crash it (tests/own_postgres.py)."""
    from tests.own_postgres import OwnPostgres

    server = OwnPostgres("own")
    await server.drop_databases()
    yield server
    await server.drop_databases()
