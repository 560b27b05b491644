"""`cmpd serve`: one process, or N workers sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys

from cmp.audit.signing import Signer
from cmp.cli.database import prepare_database, resolve_dsn
from cmp.config import ConfigError, Settings


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    demo = args.demo or settings.demo
    # What the configuration names is checked before the database is touched.
    Signer.load_or_create(settings.signing_key_path)
    _check_listen(settings, reuse_port=args.worker or args.workers > 1)
    if not args.worker:
        dsn = resolve_dsn(settings)
        # Migrations take a session advisory lock: the direct URL, not the pooler.
        asyncio.run(prepare_database(settings, settings.session_dsn(dsn), demo=demo))
    else:
        dsn = resolve_dsn(settings)
    if args.workers > 1 and not args.worker:
        return _supervise(settings, dsn, args.workers, demo)
    _run_server(settings, dsn, reuse_port=args.worker, demo=demo)
    return 0


def _check_listen(settings: Settings, *, reuse_port: bool) -> None:
    """Bind the listen address once, so a taken port or a bad host is one line."""
    address = (settings.host, settings.port)
    try:
        family = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server(address, family=family, reuse_port=reuse_port):
            pass
    except OSError as exc:
        raise ConfigError(
            f"CMP_HOST/CMP_PORT: cannot listen on {settings.host}:{settings.port}:"
            f" {exc.strerror or exc}"
        ) from None


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
