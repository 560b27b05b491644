"""`cmpd export`, `purge`, `stats-url`, `verify`: the auditor's and the operator's tools."""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg

from cmp.cli.database import resolve_dsn, with_connection
from cmp.config import Settings


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """Stream a site's log to a file straight from the database, with progress."""
    from cmp.store import audit as audit_store
    from cmp.store.audit import ExportFilter
    from cmp.store.sites import select_site

    dsn = resolve_dsn(settings)
    out = Path(args.out)

    async def export(conn: asyncpg.Connection) -> int:
        total = await audit_store.count_events(conn, args.site)
        if total == 0 and await select_site(conn, args.site) is None:
            print(f"cmpd: no site {args.site!r}", file=sys.stderr)
            return 1
        done = 0
        tmp = out.with_name(out.name + ".part")
        with tmp.open("w", encoding="utf-8") as fh:
            async with (
                conn.transaction(readonly=True),
                audit_store.export_lines(conn, ExportFilter(args.site)) as chunks,
            ):
                async for lines in chunks:
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
    """Print a signed link to a site's statistics page, or with --revoke revoke them all;
    2 with one line for an unknown site or a range the page would refuse."""
    from cmp.stats_links import signed_stats_url
    from cmp.store.sites import rotate_stats_link_key, select_stats_link_key

    base = args.base_url or f"http://{settings.host}:{settings.port}"

    async def mint(conn: asyncpg.Connection) -> int:
        if args.revoke:
            if not await rotate_stats_link_key(conn, args.site):
                print(f"cmpd stats-url: no site {args.site!r}", file=sys.stderr)
                return 2
            print(f"{args.site}: every stats link minted before is revoked")
            return 0
        key = await select_stats_link_key(conn, args.site)
        if key is None:
            print(f"cmpd stats-url: no site {args.site!r}", file=sys.stderr)
            return 2
        link = signed_stats_url(
            key,
            base,
            args.site,
            ttl_seconds=args.ttl,
            from_=args.from_,
            to=args.to,
            interval=args.interval,
        )
        print(link)
        return 0

    try:
        return with_connection(resolve_dsn(settings), mint)
    except ValueError as exc:
        print(f"cmpd stats-url: {exc}", file=sys.stderr)
        return 2


def cmd_verify(settings: Settings | None, args: argparse.Namespace) -> int:
    """`cmpd verify`: 0 verified, 1 verification failed, 2 usage or unreadable input."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from cmp.audit.signing import KeyFileError, load_public_key
    from cmp.audit.verify import verify_export

    if args.workers is not None and args.workers < 1:
        print("cmpd verify: error: --workers must be at least 1", file=sys.stderr)
        return 2
    checkpoint: dict[str, Any] | None = None
    public_key: Ed25519PublicKey | None = None
    if args.checkpoint is not None:
        if args.public_key is None:
            print("cmpd verify: error: --checkpoint needs --public-key", file=sys.stderr)
            return 2
        try:
            checkpoint = json.loads(Path(args.checkpoint).read_bytes())
        except (OSError, ValueError) as exc:
            print(f"cmpd verify: cannot read checkpoint {args.checkpoint}: {exc}", file=sys.stderr)
            return 2
        if not isinstance(checkpoint, dict):
            print(f"cmpd verify: {args.checkpoint} is not a JSON object", file=sys.stderr)
            return 2
    if args.public_key is not None:
        try:
            public_key = load_public_key(args.public_key)
        except KeyFileError as exc:
            print(f"cmpd verify: {exc}", file=sys.stderr)
            return 2
    source: str | Iterable[bytes] = sys.stdin.buffer if args.file == "-" else args.file
    try:
        result = verify_export(
            source,
            checkpoint=checkpoint,
            public_key=public_key,
            partial=args.partial,
            workers=args.workers,
        )
    except (OSError, EOFError, zlib.error) as exc:
        print(f"cmpd verify: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0 if result.ok else 1


def cmd_verify_receipt(settings: Settings | None, args: argparse.Namespace) -> int:
    """Check a visitor's receipt offline; names what fails (docs/audit-log.md)."""
    from cmp.audit.notes import NoteError
    from cmp.audit.receipt import ReceiptError, load_key, newer_checkpoint, verify_receipt
    from cmp.audit.signing import KeyFileError

    try:
        key, name = load_key(Path(args.public_key).read_text("utf-8"))
        receipt = json.loads(Path(args.file).read_text("utf-8"))
        if not isinstance(receipt, dict):
            raise ReceiptError("the receipt file is not a JSON object")
        newer, proof = newer_checkpoint(args.checkpoint, args.consistency_proof)
        result = verify_receipt(receipt, key, key_name=name, newer=newer, consistency_proof=proof)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"FAILED: cannot read input: {exc}", file=sys.stderr)
        return 2
    except (KeyFileError, NoteError) as exc:
        print(f"FAILED: public key: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # ReceiptError, and JSON that does not parse
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0
