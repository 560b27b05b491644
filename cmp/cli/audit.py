"""`cmpd export`, `purge`, `stats-url`, `verify`: the auditor's and the operator's tools."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import asyncpg

from cmp.cli.database import resolve_dsn, with_connection
from cmp.config import Settings


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """Stream a site's log to a file straight from the database, with progress."""
    from cmp.store import audit as audit_store
    from cmp.store.audit import ExportFilter

    dsn = resolve_dsn(settings)
    out = Path(args.out)

    async def export(conn: asyncpg.Connection) -> int:
        total = await audit_store.count_events(conn, args.site)
        if total == 0 and await conn.fetchval(
            "SELECT NOT EXISTS (SELECT 1 FROM sites WHERE site_id = $1)", args.site
        ):
            print(f"cmpd: no site {args.site!r}", file=sys.stderr)
            return 1
        done = 0
        tmp = out.with_name(out.name + ".part")
        with tmp.open("w", encoding="utf-8") as fh:
            async with conn.transaction(readonly=True):
                async for lines in audit_store.export_lines(conn, ExportFilter(args.site)):
                    fh.write("\n".join(lines) + "\n")
                    done += len(lines)
                    _progress(done, total)
        tmp.replace(out)
        print(f"\nexported {done} records of {args.site} to {out}", file=sys.stderr)
        return 0

    return with_connection(dsn, export)


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total if total else width
    pct = 100 * done // total if total else 100
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {pct:3d}% {done}/{total}")
    sys.stderr.flush()


def cmd_purge(settings: Settings, args: argparse.Namespace) -> int:
    from cmp.audit.signing import Signer
    from cmp.maintenance import purge

    dsn = resolve_dsn(settings)
    signer = Signer.load_or_create(settings.signing_key_path)

    done = with_connection(dsn, lambda conn: purge(conn, signer))
    for p in done:
        print(f"{p.site_id}: purged {p.deleted} records through seq {p.through_seq}")
    if not done:
        print("nothing to purge")
    return 0


def cmd_stats_url(settings: Settings, args: argparse.Namespace) -> int:
    from cmp.audit.signing import Signer
    from cmp.stats_page import signed_stats_url

    # The server's key: the same CMP_SIGNING_KEY_FILE / CMP_DATA_DIR as `cmpd serve`.
    signer = Signer.load_or_create(settings.signing_key_path)
    base = args.base_url or f"http://{settings.host}:{settings.port}"
    try:
        print(
            signed_stats_url(
                signer,
                base,
                args.site,
                ttl_seconds=args.ttl,
                from_=args.from_,
                to=args.to,
                interval=args.interval,
            )
        )
    except ValueError as exc:
        print(f"cmpd stats-url: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_verify(settings: Settings | None, args: argparse.Namespace) -> int:
    from cmp.audit.verify import main as verify_main

    argv = [args.file]
    if args.checkpoint:
        argv += ["--checkpoint", args.checkpoint]
    if args.public_key:
        argv += ["--public-key", args.public_key]
    if args.partial:
        argv += ["--partial"]
    return verify_main(argv)
