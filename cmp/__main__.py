"""`cmpd` (also `python -m cmp`): serve, migrate, demo, site apply, keys, export, verify, purge.

Settings are built here once and passed down. With no CMP_DATABASE_URL the embedded
PostgreSQL under CMP_DATA_DIR is started (and stopped when the last user exits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from cmp.config import ConfigError, Settings, load_settings
from cmp.logs import setup_logging
from cmp.store.migrate import SchemaAheadError, migrate, schema_status

_embedded: Any = None  # keeps the embedded server handle alive for the process lifetime


def resolve_dsn(settings: Settings) -> str:
    global _embedded
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    from cmp.store.db import start_embedded

    _embedded = start_embedded(settings.data_dir)
    return str(_embedded.get_uri())


async def _connect(dsn: str) -> asyncpg.Connection:
    from cmp.store.db import connect

    return await connect(dsn)


# --- database set-up shared by serve/migrate/demo ----------------------------------


async def prepare_database(settings: Settings, dsn: str, *, demo: bool) -> None:
    from cmp.store.keys import ensure_root_key

    conn = await _connect(dsn)
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
        key = await ensure_root_key(
            conn, settings.admin_key.get_secret_value() if settings.admin_key else None
        )
        if key is not None:
            print(f"root admin key (shown once, store it now): {key}", flush=True)
        if demo:
            await load_demo(conn)
            base = f"http://{settings.host}:{settings.port}"
            print("demo pages:", flush=True)
            for site_id in await conn.fetch("SELECT site_id FROM sites ORDER BY site_id"):
                print(f"  {base}/demo/{site_id[0]}", flush=True)
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


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    demo = args.demo or settings.demo
    if not args.worker:
        dsn = resolve_dsn(settings)
        asyncio.run(prepare_database(settings, dsn, demo=demo))
    else:
        dsn = resolve_dsn(settings)
    if args.workers > 1 and not args.worker:
        return _supervise(settings, dsn, args.workers, demo)
    _run_server(settings, dsn, reuse_port=args.worker, demo=demo)
    return 0


def _run_server(settings: Settings, dsn: str, *, reuse_port: bool, demo: bool) -> None:
    from aiohttp import web

    from cmp.app import create_app

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    app = create_app(settings.model_copy(update={"demo": demo}), dsn)
    print(f"cmp serving on http://{settings.host}:{settings.port} (pid {os.getpid()})", flush=True)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log=None,
        reuse_port=reuse_port,
        print=None,
        handle_signals=True,
    )


def _supervise(settings: Settings, dsn: str, workers: int, demo: bool) -> int:
    """Start N worker processes sharing the port (SO_REUSEPORT); stop them together."""
    env = {**os.environ, "CMP_DATABASE_URL": dsn, "CMP_MIGRATE_ON_START": "false"}
    argv = [sys.executable, "-m", "cmp", "serve", "--worker"] + (["--demo"] if demo else [])
    children = [subprocess.Popen(argv, env=env) for _ in range(workers)]

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [child.wait() for child in children]
    return max(codes, default=0)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    dsn = resolve_dsn(settings)

    async def run() -> None:
        conn = await _connect(dsn)
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
        conn = await _connect(dsn)
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
        conn = await _connect(dsn)
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


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """Stream a site's log to a file straight from the database, with progress."""
    from cmp.store import audit as audit_store
    from cmp.store.audit import ExportFilter

    dsn = resolve_dsn(settings)
    out = Path(args.out)

    async def run() -> int:
        conn = await _connect(dsn)
        try:
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
        finally:
            await conn.close()

    return asyncio.run(run())


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

    async def run() -> int:
        conn = await _connect(dsn)
        try:
            done = await purge(conn, signer)
        finally:
            await conn.close()
        for p in done:
            print(f"{p.site_id}: purged {p.deleted} records through seq {p.through_seq}")
        if not done:
            print("nothing to purge")
        return 0

    return asyncio.run(run())


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmpd", description="cmp consent backend")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.add_argument("--demo", action="store_true", help="load the demo sites, serve /demo")
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply pending schema migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("demo", help="create the seed sites and print their keys").set_defaults(
        func=cmd_demo
    )
    site = sub.add_parser("site", help="site definitions").add_subparsers(
        dest="site_cmd", required=True
    )
    apply = site.add_parser("apply", help="apply site TOML files")
    apply.add_argument("files", nargs="+")
    apply.set_defaults(func=cmd_site_apply)
    key = sub.add_parser("key", help="API keys").add_subparsers(dest="key_cmd", required=True)
    create = key.add_parser("create", help="create a site key and print it once")
    create.add_argument("--site", required=True)
    create.add_argument("--scope", required=True, choices=["admin", "read", "audit"])
    create.set_defaults(func=cmd_key_create)
    export = sub.add_parser("export", help="export a site's log as JSON lines")
    export.add_argument("--site", required=True)
    export.add_argument("--out", required=True)
    export.set_defaults(func=cmd_export)
    sub.add_parser("purge", help="delete records past each site's retention").set_defaults(
        func=cmd_purge
    )
    stats_url = sub.add_parser(
        "stats-url", help="print a short-lived signed link to a site's statistics page"
    )
    stats_url.add_argument("--site", required=True)
    stats_url.add_argument(
        "--from",
        dest="from_",
        metavar="FROM",
        help="RFC 3339 timestamp or YYYY-MM-DD (default: 30 days before --to)",
    )
    stats_url.add_argument("--to", help="RFC 3339 timestamp or YYYY-MM-DD, exclusive")
    stats_url.add_argument("--interval", choices=["day", "week", "month"], default="day")
    stats_url.add_argument(
        "--ttl", type=int, default=900, help="seconds the link stays valid (max 604800)"
    )
    stats_url.add_argument("--base-url", help="public URL of the service")
    stats_url.set_defaults(func=cmd_stats_url)
    verify = sub.add_parser("verify", help="verify an exported log offline")
    verify.add_argument("file")
    verify.add_argument("--checkpoint")
    verify.add_argument("--public-key")
    verify.add_argument(
        "--partial", action="store_true", help="a filtered export: check records one by one"
    )
    verify.set_defaults(func=cmd_verify, no_settings=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "no_settings", False):
        return int(args.func(None, args))
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"cmpd: bad configuration: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    try:
        return int(args.func(settings, args))
    except SchemaAheadError as exc:
        print(f"cmpd: {exc}", file=sys.stderr)
        return 3
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"cmpd: database error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from cmp.sitefile import SiteFileError

        if isinstance(exc, SiteFileError):
            print(f"cmpd: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
