"""`cmpd migrate`, `demo`, `site apply`, `key create`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from cmp.cli.database import open_connection, prepare_database, resolve_dsn
from cmp.config import Settings
from cmp.store.migrate import migrate


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    dsn = resolve_dsn(settings)

    async def run() -> None:
        conn = await open_connection(dsn)
        try:
            applied = await migrate(conn)
            print(f"applied: {', '.join(applied)}" if applied else "schema is current")
        finally:
            await conn.close()

    asyncio.run(run())
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    dsn = resolve_dsn(settings)
    asyncio.run(prepare_database(settings, dsn, demo=True))
    return 0


def cmd_site_apply(settings: Settings, args: argparse.Namespace) -> int:
    from cmp import sitefile

    files = [sitefile.load(Path(p)) for p in args.files]  # validate all before touching any
    dsn = resolve_dsn(settings)

    async def run() -> None:
        conn = await open_connection(dsn)
        try:
            for loaded in files:
                result = await sitefile.apply(conn, loaded)
                what = "created" if result.site_created else "updated"
                pub = result.published
                policy = (
                    f", published version {pub.version}"
                    f" ({'material' if pub.material else 'not material'})"
                    if pub
                    else ", policy unchanged"
                )
                print(f"{result.site_id}: {what}{policy}")
        finally:
            await conn.close()

    asyncio.run(run())
    return 0


def cmd_key_create(settings: Settings, args: argparse.Namespace) -> int:
    from cmp.store.keys import insert_key
    from cmp.store.sites import select_site

    dsn = resolve_dsn(settings)

    async def run() -> int:
        conn = await open_connection(dsn)
        try:
            if await select_site(conn, args.site) is None:
                print(f"cmpd: no site {args.site!r}", file=sys.stderr)
                return 1
            created = await insert_key(conn, args.site, args.scope)
            print(created.key)
            return 0
        finally:
            await conn.close()

    return asyncio.run(run())
