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

# (name, Cluster arguments, where wrk connects). Each run gets a fresh cluster and
# database, so no run inherits another's table growth or autovacuum.
LAYOUTS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("--workers 3", {"instances": 1, "serve_args": ("--workers", "3")}, "direct"),
    ("--workers 3", {"instances": 1, "serve_args": ("--workers", "3")}, "nginx"),
    ("3 instances", {"instances": 3}, "nginx"),
    ("3 instances + PgBouncer", {"instances": 3, "pgbouncer": True}, "nginx"),
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
        # Odd rounds run the layouts in reverse, so a drifting machine favours none.
        order = LAYOUTS if round_no % 2 == 0 else LAYOUTS[::-1]
        for name, layout, front in order:
            cluster = Cluster(args.data_dir / "topology" / f"{round_no}-{len(results)}", **layout)
            try:
                await cluster.start()
                async with aiohttp.ClientSession() as session:
                    keys = await seed.setup_site(session, cluster.base, cluster.admin_key)
                load = runner.LoadConfig(seed.SITE_ID, seed.ORIGIN, keys.read, 1000)
                port = cluster.nginx_port if front == "nginx" else cluster.instances[0].port
                # CPU is not split per process here: the figure is req/s.
                server = runner.Server(f"{name} ({front})", port, cluster_pid(cluster))
                run = await runner.run_wrk(wrk, server, scenario, connections, duration, load)
                total, _ = await counts.stored_counts(cluster.direct_dsn, seed.SITE_ID, [])
                acked = run["events_2xx"]
                run["round"] = round_no
                run["stored"] = total
                run["stored_matches_acked"] = total == acked if run["exact"] else total >= acked
                results.append(run)
                say(
                    f"  {name} ({front}): {run['rps']:,.0f} req/s, p50 {run['p50_ms']:.1f} ms, "
                    f"p99 {run['p99_ms']:.1f} ms; stored {total:,} / acked {acked:,}; "
                    f"load average {run['loadavg_1m']:.1f}"
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
