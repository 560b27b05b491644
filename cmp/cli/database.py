"""The database a command works on: the embedded default or CMP_DATABASE_URL,
migrated, with the demo sites when asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from cmp.config import ConfigError, Settings
from cmp.store.migrate import SchemaAheadError, migrate, schema_status, stale_functions

T = TypeVar("T")

_embedded: Any = None  # keeps the embedded server handle alive for the process lifetime


def resolve_dsn(settings: Settings) -> str:
    global _embedded
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    if settings.embedded_database == "refuse":
        raise ConfigError(
            "CMP_DATABASE_URL: not set, and CMP_EMBEDDED_DATABASE=refuse forbids the embedded"
            " PostgreSQL (set CMP_EMBEDDED_DATABASE=allow to use it anyway)"
        )
    from cmp.store.db import EmbeddedMissing, start_embedded

    try:
        _embedded = start_embedded(settings.data_dir)
    except EmbeddedMissing as exc:
        raise ConfigError(f"CMP_DATABASE_URL: not set, and {exc}") from None
    except OSError as exc:
        raise ConfigError(
            f"CMP_DATA_DIR: cannot hold the embedded PostgreSQL in {settings.data_dir}: {exc}"
        ) from None
    return str(_embedded.get_uri())


class DatabaseUnreachable(ConnectionError):
    """The first connection of a command failed; the message names where it was to go."""


async def open_connection(dsn: str) -> asyncpg.Connection:
    from cmp.store.db import DB_ERRORS_OR_TIMEOUT, connect

    where = "the embedded PostgreSQL" if _embedded is not None else "CMP_DATABASE_URL"
    try:
        return await connect(dsn)
    except (asyncpg.ClientConfigurationError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except DB_ERRORS_OR_TIMEOUT as exc:
        raise DatabaseUnreachable(f"cannot connect to {where}: {exc}") from None


def with_connection(dsn: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run one command's database work on its own connection, closed afterwards."""

    async def run() -> T:
        conn = await open_connection(dsn)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


# --- database set-up shared by serve/migrate/demo ----------------------------------


async def prepare_database(settings: Settings, dsn: str, *, demo: bool) -> None:
    from cmp.store.keys import ensure_root_key
    from cmp.store.sites import select_sites

    conn = await open_connection(dsn)
    try:
        if settings.migrate_on_start:
            applied = await migrate(conn)
            if applied:
                print(f"migrated: {', '.join(applied)}", flush=True)
        else:
            missing, unknown = await schema_status(conn)
            if unknown:
                raise SchemaAheadError(f"database has unknown migrations {unknown}")
            if missing:
                raise SchemaAheadError(f"database lacks migrations {missing}; run cmpd migrate")
            stale = await stale_functions(conn)
            if stale:
                raise SchemaAheadError(f"database lacks functions of {stale}; run cmpd migrate")
        key = await ensure_root_key(
            conn, settings.admin_key.get_secret_value() if settings.admin_key else None
        )
        if key is not None:
            print(f"root admin key (shown once, store it now): {key}", flush=True)
        if demo:
            await load_demo(conn)
            base = f"http://{settings.host}:{settings.port}"
            print("demo pages:", flush=True)
            for site in await select_sites(conn):
                print(f"  {base}/demo/{site.site_id}", flush=True)
            print(
                f"try: curl {base}/readyz\n"
                f"     curl -H 'Authorization: Bearer <read key>' "
                f"{base}/v1/sites/kundetelling/subjects/<subject id>/consent",
                flush=True,
            )
    finally:
        await conn.close()


async def load_demo(conn: asyncpg.Connection) -> None:
    """Apply the demo site files. A site's files are its history (INNFRAM has two): a new
    site gets them all in order; an existing one only its last, so a restart is a no-op."""
    from cmp import sitefile
    from cmp.store.keys import insert_key
    from cmp.store.sites import select_site

    by_site: dict[str, list[sitefile.SiteFile]] = {}
    for path in sitefile.demo_files():
        loaded = sitefile.load(path)
        by_site.setdefault(loaded.site_id, []).append(loaded)
    for site_id, files in by_site.items():
        if await select_site(conn, site_id) is not None:
            files = files[-1:]
        created = False
        for loaded in files:
            result = await sitefile.apply(conn, loaded)
            created = created or result.site_created
            if result.published is not None:
                note = "" if result.published.material else " (not material)"
                print(
                    f"{site_id}: published policy version {result.published.version}{note}",
                    flush=True,
                )
        if created:
            read = await insert_key(conn, site_id, "read")
            audit = await insert_key(conn, site_id, "audit")
            print(f"{site_id}: read key {read.key}\n{site_id}: audit key {audit.key}", flush=True)


# --- commands ----------------------------------------------------------------------
