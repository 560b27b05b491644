"""`cmpd migrate`, `demo`, `site apply`, `key create`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import asyncpg

from cmp.cli.database import prepare_database, resolve_dsn, with_connection
from cmp.config import Settings
from cmp.store.migrate import migrate


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    # Migrations take a session advisory lock: never through a transaction-mode pooler.
    applied = with_connection(settings.session_dsn(resolve_dsn(settings)), migrate)
    print(f"applied: {', '.join(applied)}" if applied else "schema is current")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    dsn = resolve_dsn(settings)
    asyncio.run(prepare_database(settings, dsn, demo=True))
    return 0


def cmd_site_apply(settings: Settings, args: argparse.Namespace) -> int:
    from cmp import sitefile

    files = [sitefile.load(Path(p)) for p in args.files]  # validate all before touching any
    dsn = resolve_dsn(settings)

    async def apply_all(conn: asyncpg.Connection) -> None:
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

    with_connection(dsn, apply_all)
    return 0


def cmd_key_create(settings: Settings, args: argparse.Namespace) -> int:
    from cmp.store.keys import KeyLimitReached, insert_key
    from cmp.store.sites import select_site

    dsn = resolve_dsn(settings)

    async def create(conn: asyncpg.Connection) -> int:
        if await select_site(conn, args.site) is None:
            print(f"cmpd: no site {args.site!r}", file=sys.stderr)
            return 1
        try:
            created = await insert_key(conn, args.site, args.scope)
        except KeyLimitReached as exc:
            print(f"cmpd: {exc}", file=sys.stderr)
            return 1
        print(created.key)
        return 0

    return with_connection(dsn, create)
