"""`python -m loadtest --topology`: ingest throughput of one machine's cmp deployed
three ways, in one run: `cmpd serve --workers 3` (direct, then behind nginx), three
separate `cmpd serve` behind nginx, and the same through PgBouncer (transaction
pooling). Each on a fresh PostgreSQL over TCP (loadtest/cluster.py), driven by the
same wrk single-event ingest script; stored events are counted against the 2xx answers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from loadtest import counts, runner, seed, servers
from loadtest.cluster import Cluster, missing_tools
from loadtest.report import say

LAYOUTS: tuple[tuple[str, dict[str, Any], tuple[str, ...]], ...] = (
    ("--workers 3", {"instances": 1, "serve_args": ("--workers", "3")}, ("direct", "nginx")),
    ("3 instances", {"instances": 3}, ("nginx",)),
    ("3 instances + PgBouncer", {"instances": 3, "pgbouncer": True}, ("nginx",)),
)


async def measure(args: argparse.Namespace) -> int:
    missing = missing_tools()
    if missing:
        say(f"loadtest --topology needs {', '.join(missing)} (apt-get install nginx pgbouncer)")
        return 2
    wrk = servers.ensure_wrk()
    scenario = next(s for s in runner.SCENARIOS if s.name == "ingest-1")
    connections = args.concurrency[0]
    duration = args.duration or 8
    results: list[dict[str, Any]] = []
    say(
        f"loadtest --topology: ingest-1, c={connections}, {duration} s per run, "
        f"{args.rounds} round(s)"
    )
    for round_no in range(args.rounds):
        for name, layout, fronts in LAYOUTS:
            cluster = Cluster(args.data_dir / "topology" / f"{round_no}-{len(results)}", **layout)
            try:
                await cluster.start()
                async with aiohttp.ClientSession() as session:
                    keys = await seed.setup_site(session, cluster.base, cluster.admin_key)
                load = runner.LoadConfig(seed.SITE_ID, seed.ORIGIN, keys.read, 1000)
                for front in fronts:
                    port = cluster.nginx_port if front == "nginx" else cluster.instances[0].port
                    # CPU is not split per process here: the figure is req/s.
                    server = runner.Server(f"{name} ({front})", port, cluster_pid(cluster))
                    run = await runner.run_wrk(wrk, server, scenario, connections, duration, load)
                    run["round"] = round_no
                    results.append(run)
                total, _ = await counts.stored_counts(cluster.direct_dsn, seed.SITE_ID, [])
                acked = sum(r["events_2xx"] for r in results[-len(fronts) :])
                for r in results[-len(fronts) :]:
                    r["stored_matches_acked"] = total == acked if r["exact"] else total >= acked
                say(
                    f"  {name}: "
                    + ", ".join(
                        f"{r['server'].split('(')[-1].rstrip(')')} {r['rps']:,.0f} req/s "
                        f"p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms"
                        for r in results[-len(fronts) :]
                    )
                    + f"; stored {total:,} / acked {acked:,}"
                )
            finally:
                cluster.close()
    say("\n| layout | front | req/s | p50 ms | p99 ms | non-2xx | stored = acked |")
    say("|---|---|---:|---:|---:|---:|---|")
    for r in results:
        label, _, front = r["server"].partition(" (")
        say(
            f"| {label} | {front.rstrip(')')} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['non_2xx']} | {r['stored_matches_acked']} |"
        )
    out = Path(args.out) if args.out else args.data_dir / "topology.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"at": time.time(), "runs": results}, indent=2))
    say(f"results: {out}")
    return 0 if all(r["stored_matches_acked"] for r in results) else 1


def cluster_pid(cluster: Cluster) -> int:
    proc = cluster.instances[0].child.proc
    assert proc is not None
    return proc.pid
