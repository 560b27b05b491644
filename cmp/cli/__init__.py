"""`cmpd` (also `python -m cmp`): serve, migrate, demo, site apply, keys, export, verify,
verify-receipt, purge.

Settings are built here once and passed down. With no CMP_DATABASE_URL the embedded
PostgreSQL under CMP_DATA_DIR is started (and stopped when the last user exits).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import get_args

from cmp.audit.signing import KeyFileError
from cmp.cli.admin import cmd_demo, cmd_key_create, cmd_migrate, cmd_site_apply
from cmp.cli.audit import cmd_export, cmd_purge, cmd_stats_url, cmd_verify, cmd_verify_receipt
from cmp.cli.database import load_demo, resolve_dsn
from cmp.cli.serve import cmd_serve
from cmp.config import ConfigError, load_settings
from cmp.logs import setup_logging
from cmp.models import Scope
from cmp.store.db import DB_ERRORS
from cmp.store.migrate import SchemaAheadError

__all__ = ["build_parser", "load_demo", "main", "resolve_dsn"]


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
    create.add_argument("--scope", required=True, choices=get_args(Scope))
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
    stats_url.add_argument(
        "--revoke", action="store_true", help="revoke every link to the site's page instead"
    )
    stats_url.set_defaults(func=cmd_stats_url)
    verify = sub.add_parser(
        "verify",
        help="verify an exported log offline",
        description="Recompute an exported consent log's hash chain offline "
        "and name the first record that does not fit.",
        epilog="Exit status: 0 verified, 1 verification failed, 2 usage or unreadable file.",
    )
    verify.add_argument("file", help="JSONL export (gzip accepted), or - for standard input")
    verify.add_argument("--checkpoint", metavar="FILE", help="signed checkpoint (JSON)")
    verify.add_argument(
        "--public-key", metavar="FILE", help="server public key: PEM or the JSON document"
    )
    verify.add_argument(
        "--partial",
        action="store_true",
        help="filtered export: allow seq gaps, check links only between consecutive seqs",
    )
    verify.add_argument(
        "--workers", type=int, metavar="N", help="worker processes (default: one per CPU)"
    )
    verify.set_defaults(func=cmd_verify, no_settings=True)
    receipt = sub.add_parser("verify-receipt", help="verify a visitor's consent receipt offline")
    receipt.add_argument("file")
    receipt.add_argument(
        "--public-key", required=True, help="key document, PEM, or note verifier key"
    )
    receipt.add_argument(
        "--checkpoint", help="a newer checkpoint (note, or a consistency proof response)"
    )
    receipt.add_argument("--consistency-proof", help="a consistency proof response (JSON)")
    receipt.set_defaults(func=cmd_verify_receipt, no_settings=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "no_settings", False):
        return int(args.func(None, args))
    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(2, f"bad configuration: {exc}")
    setup_logging(settings.log_level, settings.log_format)
    try:
        return int(args.func(settings, args))
    except ConfigError as exc:
        return _fail(2, f"bad configuration: {exc}")
    except KeyFileError as exc:
        return _fail(2, f"bad configuration: {settings.signing_key_variable}: {exc}")
    except SchemaAheadError as exc:
        return _fail(3, str(exc))
    except DB_ERRORS as exc:
        return _fail(1, f"database error: {exc}")
    except Exception as exc:
        from cmp.sitefile import SiteFileError

        if isinstance(exc, SiteFileError):
            return _fail(2, str(exc))
        raise


def _fail(code: int, message: str) -> int:
    """One line on stderr (a message with line breaks is joined), and `code`."""
    print("cmpd: " + " ".join(message.split()), file=sys.stderr)
    return code
