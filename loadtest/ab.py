"""The working tree against a git revision, in alternating rounds of one run.

    python -m loadtest.ab REV [--scenarios ingest-1,ingest-10] [--rounds 6] [--duration 5]
        [--connections 64]

Two `make bench` runs one after the other compare two machines as much as two versions:
on these shared cores the reference server alone moves tens of percent within minutes.
Here both versions of cmp serve at once (one worker each, a database each on the same
embedded PostgreSQL); each round runs every scenario against both, in ABBA order, so a
drift of the machine falls on both alike. Reported per scenario: each version's req/s
(median and range over the rounds), cmp and PostgreSQL CPU per request, and the paired
ratio working tree / REV of each round, whose median and range say whether the change
is beyond the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from loadtest import seed, servers
from loadtest.instructions import ROOT, checkout_of
from loadtest.report import say
from loadtest.runner import SCENARIOS, LoadConfig, Server, run_wrk

CONNECTIONS = 64  # the default; make bench runs the single-event scenarios at 256 too
# The scenarios a comparison can run: those that need only the plain bench site.
PLAIN = tuple(s.name for s in SCENARIOS if not s.site and s.name not in ("state", "lookup-100"))


async def serve(
    procs: servers.Processes, checkout: Path, dsn: str, db_pid: int, name: str
) -> tuple[Server, LoadConfig]:
    """A running, seeded cmp of `checkout`, one worker. It runs in the checkout, with the
    checkout on its path: `python -m` looks in its working directory first."""
    port = servers.free_port()
    admin = uuid.uuid4().hex
    env = servers.cmp_env(dsn, port, admin, procs.log_dir / name / "cmp")
    env["PYTHONPATH"] = str(checkout)
    label = "base" if checkout != ROOT else "head"
    proc = procs.start(f"cmp-{label}", servers.cmp_argv(1), env, cwd=checkout)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        await servers.wait_ready(session, f"{base}/healthz", proc)
        keys = await seed.setup_site(session, base, admin)
    load = LoadConfig(seed.SITE_ID, seed.ORIGIN, keys.read, 1)
    return Server(name, port, proc.pid, db_pid=db_pid), load


async def alternate(
    wrk: str, servers_: tuple[tuple[Server, LoadConfig], ...], args: argparse.Namespace
) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Every round runs each scenario against both servers, in ABBA order."""
    scenarios = [s for s in SCENARIOS if s.name in args.scenarios]
    runs: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
        s.name: ([], []) for s in scenarios
    }
    for n in range(args.rounds):
        for s in scenarios:
            for which in (0, 1) if n % 2 == 0 else (1, 0):
                server, load = servers_[which]
                result = await run_wrk(wrk, server, s, args.connections, args.duration, load)
                if result["non_2xx"] or result["socket_errors"]:
                    raise RuntimeError(f"{server.name} {s.name}: refused or failed requests")
                runs[s.name][which].append(result)
        say(f"ab: round {n + 1} of {args.rounds} done")
    return runs


def summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    rps = [r["rps"] for r in runs]
    return {
        "rps": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "cpu_us": statistics.median(r["cpu_us_per_req"] for r in runs),
        "db_cpu_us": statistics.median(r["db_cpu_us_per_req"] or 0 for r in runs),
    }


def compare(base: list[dict[str, Any]], head: list[dict[str, Any]]) -> dict[str, Any]:
    """Each version's summary and the per-round ratio head / base."""
    ratios = [h["rps"] / b["rps"] for b, h in zip(base, head, strict=True) if b["rps"]]
    return {
        "base": summary(base),
        "head": summary(head),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def format_table(
    rev: str, found: dict[str, dict[str, Any]], rounds: int, connections: int = CONNECTIONS
) -> str:
    lines = [
        f"| scenario, c={connections} | {rev} req/s (range), cmp / PG µs | working tree "
        f"req/s (range), cmp / PG µs | ratio per round, median (range) |",
        "|---|---:|---:|---:|",
    ]
    for name, c in found.items():
        b, h = c["base"], c["head"]
        lines.append(
            f"| {name} | {b['rps']:,.0f} ({b['rps_min']:,.0f}–{b['rps_max']:,.0f}), "
            f"{b['cpu_us']:.0f} / {b['db_cpu_us']:.0f} | {h['rps']:,.0f} "
            f"({h['rps_min']:,.0f}–{h['rps_max']:,.0f}), {h['cpu_us']:.0f} / "
            f"{h['db_cpu_us']:.0f} | {c['ratio']:.2f} ({c['ratio_min']:.2f}–"
            f"{c['ratio_max']:.2f}) |"
        )
    lines.append(f"\n{rounds} rounds, each scenario against both, ABBA order.")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    wrk = servers.ensure_wrk()
    pg = servers.start_postgres(args.data_dir)
    server_dsn, db_pid = str(pg.get_uri()), int(pg.get_pid())
    names = [(await servers.create_database(server_dsn))[0] for _ in range(2)]
    dsns = [servers.with_database(server_dsn, n) for n in names]
    try:
        with servers.Processes(args.data_dir / "ab") as procs, checkout_of(args.rev) as checkout:
            base = await serve(procs, checkout, dsns[0], db_pid, args.rev)
            head = await serve(procs, ROOT, dsns[1], db_pid, "working tree")
            runs = await alternate(wrk, (base, head), args)
    finally:
        for name in names:
            await servers.drop_database(server_dsn, name)
    found = {name: compare(*pair) for name, pair in runs.items()}
    print(format_table(args.rev, found, args.rounds, args.connections))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.ab", description=__doc__)
    p.add_argument("rev", help="the git revision to compare the working tree against")
    p.add_argument("--scenarios", default="ingest-1,ingest-10", type=lambda v: v.split(","))
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--connections", type=int, default=CONNECTIONS)
    p.add_argument("--data-dir", type=Path, default=ROOT / ".data" / "bench")
    args = p.parse_args()
    unknown = set(args.scenarios) - set(PLAIN)
    if unknown:
        p.error(f"--scenarios: not one of {', '.join(PLAIN)}: {', '.join(sorted(unknown))}")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
