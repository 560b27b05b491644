"""Instructions per request of the whole cmp server, counted by callgrind: a cost that
does not drift with the machine's load.

    python -m loadtest.instructions [--scenario ingest-1] [--requests 600] [--rev REV ...]

Starts cmp (`cmpd serve`, one worker) under `valgrind --tool=callgrind` with counting
off, on a fresh database of the bench's embedded PostgreSQL, creates the bench site
through the API, then counts only while one client sends the scenario's requests one
after the other (c=1, so every request is its own group commit: the count is the same
from run to run, to a tenth of a percent). Prints instructions per request of the cmp
process (PostgreSQL and the client are not counted).

`--rev` counts a git revision too, from a temporary worktree, against the same database
server: the way to find which commit made a request dearer (loadtest/README.md has the
table). Instructions are not time (a SHA-256 block is many cheap instructions, a cache
miss is one dear one); `python -m loadtest` measures time. Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import aiohttp
import asyncpg

from loadtest import seed, servers
from loadtest.report import say

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("ingest-1", "ingest-10", "impressions-1")
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36"
)
# Requests before counting starts: the first ones prepare statements and fill caches.
WARM_UP = 20
START_WITHIN_S = 600  # imports under callgrind are ~50x slower
INTEGRATED_WITHIN_S = 120
# Chained records a request of the scenario appends (impressions are not chained).
EVENTS = {"ingest-1": 1, "ingest-10": 10}


def body(scenario: str, n: int) -> tuple[str, bytes]:
    """The path below the site and the body of request number `n` of `scenario`."""
    if scenario == "ingest-1":
        return "events", seed.batch_body(n, 1)
    if scenario == "ingest-10":
        return "events", seed.batch_body(n * 10, 10)
    if scenario == "impressions-1":
        one = (
            f'{{"impression_id":"{uuid.uuid4()}","subject_id":"s-{n}",'
            '"policy_version":1,"surface":"banner"}'
        )
        return "impressions", one.encode()
    raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")


def request_headers() -> dict[str, str]:
    """A browser's headers: the bench origin, JSON, a common user agent."""
    return {"Origin": seed.ORIGIN, "Content-Type": "application/json", "User-Agent": USER_AGENT}


def totals(out: Path) -> int:
    """The instruction total of a callgrind output file (its `totals:` line)."""
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError(f"{out}: no totals line (did callgrind finish?)")


async def count(checkout: Path, dsn: str, scenario: str, requests: int) -> int:
    """Instructions of the cmp in `checkout` over `requests` requests of `scenario`."""
    port = servers.free_port()
    admin = uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as tmp:
        env = servers.cmp_env(dsn, port, admin, Path(tmp) / "cmp")
        env["PYTHONPATH"] = str(checkout)
        env["PYTHONHASHSEED"] = "0"
        # Integration at its longest interval: fewer runs, so less of their fixed cost
        # (a transaction, a signed checkpoint) falls into the count by chance.
        env["CMP_LOG_INTEGRATION_SECONDS"] = "5"
        out = Path(tmp) / "callgrind.out"
        with (Path(tmp) / "cmp.log").open("wb") as log:
            proc = start_counted(checkout, env, out, log)
            try:
                await _drive(proc, dsn, port, admin, scenario, requests)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 120)
        return totals(out)


def start_counted(
    checkout: Path, env: dict[str, str], out: Path, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    """cmp of `checkout` under callgrind, counting off until told (`_callgrind`). Run in
    the checkout: `python -m` looks in its working directory first. Started and stopped
    here, not by `servers.Processes`: callgrind writes its counts only at a clean exit,
    which under it takes longer than that class waits before SIGKILL."""
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        *servers.cmp_argv(1),
    ]
    return subprocess.Popen(
        argv, env=env, cwd=checkout, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


async def _drive(
    proc: subprocess.Popen[bytes], dsn: str, port: int, admin: str, scenario: str, requests: int
) -> None:
    base = f"http://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        await servers.wait_ready(session, f"{base}/healthz", proc, START_WITHIN_S)
        await seed.setup_site(session, base, admin)
        headers = request_headers()
        site = f"{base}/v1/sites/{seed.SITE_ID}"

        async def send(n: int) -> None:
            path, data = body(scenario, n)
            async with session.post(f"{site}/{path}", data=data, headers=headers) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"{scenario}: HTTP {resp.status}: {await resp.text()}")
                await resp.read()

        for n in range(WARM_UP):
            await send(n)
        await integrated(dsn, WARM_UP * EVENTS.get(scenario, 0))
        _callgrind(proc.pid, "on")
        try:
            for n in range(WARM_UP, WARM_UP + requests):
                await send(n)
            # Each record's integration into the Merkle tree is per-event work too.
            await integrated(dsn, (WARM_UP + requests) * EVENTS.get(scenario, 0))
        finally:
            _callgrind(proc.pid, "off")


async def integrated(dsn: str, size: int) -> None:
    """Wait until the bench site's tree holds `size` records."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + INTEGRATED_WITHIN_S
        while True:
            built = await conn.fetchval(
                "SELECT size FROM log_trees WHERE site_id = $1", seed.SITE_ID
            )
            if (built or 0) >= size:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the tree holds {built} records, not {size}")
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


def _callgrind(pid: int, state: str) -> None:
    subprocess.run(
        ["callgrind_control", "--instr", state, str(pid)],
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def checkout_of(rev: str | None) -> Iterator[Path]:
    """The working tree itself, or a temporary worktree of `rev` (removed after)."""
    if rev is None:
        yield ROOT
        return
    where = Path(tempfile.mkdtemp(prefix="cmp-instr-"))
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
        check=True,
        capture_output=True,
    )
    try:
        # The editable install maps the package `cmp.sql` to this checkout's sql/: a
        # revision's own sql/ must win, so it is linked where the package looks first.
        link = where / "cmp" / "sql"
        if not link.exists():
            link.symlink_to(where / "sql")
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
            capture_output=True,
        )
        shutil.rmtree(where, ignore_errors=True)


async def main_async(args: argparse.Namespace) -> int:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        say("instructions: valgrind is not installed (apt-get install valgrind)")
        return 2
    pg = servers.start_postgres(args.data_dir)
    server_dsn = str(pg.get_uri())
    for rev in [None, *args.rev]:
        name, dsn = await servers.create_database(server_dsn)
        try:
            with checkout_of(rev) as checkout:
                total = await count(checkout, dsn, args.scenario, args.requests)
        finally:
            await servers.drop_database(server_dsn, name)
        label = rev or "working tree"
        say(
            f"{args.scenario}: {total / args.requests:,.0f} instructions a request "
            f"({label}, {args.requests} requests, c=1)"
        )
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.instructions", description=__doc__)
    p.add_argument("--scenario", choices=SCENARIOS, default="ingest-1")
    p.add_argument("--requests", type=int, default=600)
    p.add_argument("--rev", action="append", default=[], help="also count this git revision")
    p.add_argument("--data-dir", type=Path, default=ROOT / ".data" / "bench")
    args = p.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
