"""`python -m loadtest`: cmp against the machine's own ceiling, in one run.

Starts an embedded PostgreSQL with a fresh database, cmp (`python -m cmp serve`) and
the reference server (`loadtest/reference.py`: bare aiohttp + the same pydantic
validation), creates a bench site through the admin API, pre-fills N subjects through
the collect API, then drives both servers with the same wrk scripts in alternating A/B
rounds, measures latency at half of cmp's best rate with an open-loop generator,
checks that every acknowledged event was stored exactly once, times the audit export
when cmp has one, and prints the tables and the issue's targets. Results go to
`loadtest/results/latest.json`. Everything it starts it stops, Ctrl-C included.

    python -m loadtest            # full run, fitted to ~5 minutes
    python -m loadtest --quick    # ~1 minute smoke run
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import asyncpg

from loadtest import counts, report, seed, servers, sites
from loadtest.export import export_available, measure_export
from loadtest.matrix import run_half_rate, run_matrix, run_profile
from loadtest.procstat import RssSampler
from loadtest.report import say
from loadtest.runner import GRACE_SECONDS, SCENARIOS, LoadConfig, Meter, Server, SiteLoad

ROOT = Path(__file__).resolve().parent.parent
OVERHEAD_PER_RUN_S = 0.2  # wrk start/stop, /proc readings (measured: ~0.1 s)
HALF_RATE_EXTRA_S = 1.0  # generator start-up and drain of an open-loop run
RESERVE_S = 15.0  # count check, reports, teardown (the export is estimated apart)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run of about a minute: 1 round, c=64, 20k subjects",
    )
    p.add_argument(
        "--duration",
        type=int,
        default=None,
        help="seconds per measured run (default: fitted to --budget, 2–8)",
    )
    p.add_argument("--rounds", type=int, default=None, help="A/B rounds (default 3; quick 1)")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="wall-clock seconds the whole run should fit (default 300; quick 60)",
    )
    p.add_argument(
        "--subjects",
        type=int,
        default=None,
        help="subjects to pre-fill (default 1,000,000; quick 20,000)",
    )
    p.add_argument(
        "--concurrency",
        default=None,
        help="comma-separated wrk connection counts (default 64,256; quick 64)",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(s.name for s in SCENARIOS if s.name != "impressions-10"),
        help="comma-separated subset of: " + ", ".join(s.name for s in SCENARIOS),
    )
    p.add_argument(
        "--linked-subjects",
        type=int,
        default=None,
        help=f"subjects of the state-linked site, {sites.LINKED_SHARE * 100:.0f}%% of them linked "
        "to users (default: --subjects, at most 4,000: each link is a commit of its own)",
    )
    p.add_argument("--workers", type=int, default=1, help="cmp worker processes")
    p.add_argument(
        "--prefill-workers",
        type=int,
        default=None,
        help="cmp workers during the pre-fill (default: --workers, same server); "
        "when different, the measured cmp is started afresh after it",
    )
    p.add_argument("--prefill-connections", type=int, default=16)
    p.add_argument(
        "--profile",
        nargs="?",
        const="ingest-1",
        default=None,
        metavar="SCENARIO",
        help="one more run of SCENARIO (default ingest-1) at c=256 under py-spy; "
        "prints the top functions",
    )
    p.add_argument(
        "--topology",
        action="store_true",
        help="instead: ingest-1 through --workers 3, three instances behind nginx "
        "and the same through PgBouncer (needs nginx, pgbouncer)",
    )
    p.add_argument("--data-dir", type=Path, default=ROOT / ".data" / "bench")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default loadtest/results/latest.json; quick: DATA_DIR/quick.json)",
    )
    args = p.parse_args(argv)
    quick = args.quick
    if args.topology:
        args.rounds = args.rounds or 1
        args.concurrency = [int(c) for c in (args.concurrency or "64").split(",")]
        args.out = args.out or args.data_dir / "topology.json"
        return args
    args.rounds = args.rounds or (1 if quick else 3)
    args.prefill_workers = args.prefill_workers or args.workers
    args.budget = args.budget or (60.0 if quick else 300.0)
    args.subjects = args.subjects or (20_000 if quick else 1_000_000)
    args.linked_subjects = args.linked_subjects or min(args.subjects, 4_000)
    args.concurrency = [
        int(c) for c in (args.concurrency or ("64" if quick else "64,256")).split(",")
    ]
    names = args.scenarios.split(",")
    unknown = set(names) - {s.name for s in SCENARIOS}
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.profile is not None and args.profile not in {s.name for s in SCENARIOS}:
        p.error(f"--profile: unknown scenario {args.profile}")
    args.scenario_list = [s for s in SCENARIOS if s.name in names]
    args.out = args.out or (
        args.data_dir / "quick.json" if quick else report.RESULTS / "latest.json"
    )
    return args


def fit_duration(args: argparse.Namespace, elapsed: float, export: bool) -> int:
    """Seconds per run so that the rest fits the budget (ingest runs add a grace second)."""
    if args.duration:
        return int(args.duration)
    cells = len(args.scenario_list) * len(args.concurrency) * 2 * args.rounds
    ingest_cells = (
        cells
        * sum(1 for s in args.scenario_list if s.events_per_request)
        / max(1, len(args.scenario_list))
    )
    half_rate_runs = 4
    left = args.budget - elapsed - RESERVE_S - (args.subjects / 100_000 if export else 0)
    fixed = (
        cells * OVERHEAD_PER_RUN_S
        + ingest_cells * GRACE_SECONDS
        + half_rate_runs * HALF_RATE_EXTRA_S
    )
    fitted: int = math.floor((left - fixed) / (cells + half_rate_runs))
    return max(2, min(8, fitted))


def _raise_exit(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


async def drop_stale_databases(server_dsn: str) -> None:
    """Fresh databases of earlier runs that were interrupted before their own drop."""
    conn = await asyncpg.connect(server_dsn)
    try:
        names = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'")
    finally:
        await conn.close()
    for row in names:
        await servers.drop_database(server_dsn, row["datname"])


async def bench(args: argparse.Namespace, procs: servers.Processes) -> int:
    started = time.perf_counter()
    machine = report.machine()  # the git revision cmp is started from
    wrk = servers.ensure_wrk()
    say(
        f"loadtest: {'quick' if args.quick else 'full'} run, {args.rounds} round(s), "
        f"c={','.join(map(str, args.concurrency))}, {args.subjects:,} subjects, "
        f"{args.workers} cmp worker(s)"
    )
    busy = os.getloadavg()[0]
    if busy > 0.5 * (os.cpu_count() or 1):
        say(
            f"note: the machine is already busy (load average {busy:.1f} on {os.cpu_count()} "
            "CPUs): absolute req/s will be low and noisy; the ratios to the reference "
            "(measured in alternating rounds) and CPU µs/req drift less"
        )
    pg = servers.start_postgres(args.data_dir)
    server_dsn = str(pg.get_uri())
    await drop_stale_databases(server_dsn)
    db_name, dsn = await servers.create_database(server_dsn)
    say(f"postgres: database {db_name} (embedded, {args.data_dir})")
    try:
        return await bench_on(args, procs, wrk, dsn, int(pg.get_pid()), started, machine)
    finally:
        procs.stop_all()
        await servers.drop_database(server_dsn, db_name)
        say(f"postgres: dropped {db_name}")


async def start_cmp(
    procs: servers.Processes,
    session: aiohttp.ClientSession,
    name: str,
    workers: int,
    dsn: str,
    admin_key: str,
    data_dir: Path,
) -> tuple[subprocess.Popen[bytes], str] | None:
    port = servers.free_port()
    geo = (sites.COUNTRY_HEADER, sites.REGION_HEADER)  # what ingest-1-rules sends
    env = servers.cmp_env(dsn, port, admin_key, data_dir / "cmp", geo)
    proc = procs.start(name, servers.cmp_argv(workers), env)
    base = f"http://127.0.0.1:{port}"
    try:
        await servers.wait_ready(session, f"{base}/readyz", proc)
    except RuntimeError as exc:
        say(f"{name} failed to start: {exc}\n--- {name} log ---\n{procs.log_tail(name)}")
        return None
    return proc, base


async def run_prefill(
    args: argparse.Namespace, session: aiohttp.ClientSession, base: str, server: Server
) -> tuple[seed.PrefillResult, dict[str, Any]]:
    say(
        f"prefill: {args.subjects:,} subjects in batches of {seed.BATCH} over "
        f"{args.prefill_connections} connections, cmp with {args.prefill_workers} worker(s) ..."
    )
    meter = Meter(server)
    meter.start()
    result = await seed.prefill(session, base, args.subjects, args.prefill_connections)
    cost = await meter.stop(result.accepted)
    cost["workers"] = args.prefill_workers
    say(
        f"prefill: {result.accepted:,} events in {result.seconds:.1f} s = "
        f"{result.events_per_second:,.0f} events/s ({cost['cpu_us_per_req']:.0f} µs cmp CPU "
        f"+ {cost['db_cpu_us_per_req']:.0f} µs PG CPU per event)"
    )
    return result, cost


async def setup_other_sites(
    args: argparse.Namespace, session: aiohttp.ClientSession, base: str, admin_key: str
) -> tuple[dict[str, SiteLoad], dict[str, Any]]:
    """The sites the chosen scenarios drive besides the plain one (`loadtest.sites`)."""
    wanted = {s.site for s in args.scenario_list if s.site}
    loads: dict[str, SiteLoad] = {}
    info: dict[str, Any] = {}
    if sites.RULES in wanted:
        loads[sites.RULES], info[sites.RULES] = await sites.setup_rules_site(
            session, base, admin_key
        )
    if sites.LINKED in wanted:
        say(f"linked site: {args.linked_subjects:,} subjects, then links ...")
        loads[sites.LINKED], info[sites.LINKED] = await sites.setup_linked_site(
            session, base, admin_key, args.linked_subjects, args.prefill_connections
        )
    return loads, info


async def check_rules(
    dsn: str, ran: list[dict[str, Any]], others: dict[str, SiteLoad]
) -> dict[str, Any]:
    """Whether the rules site's events fell under the rules of their places."""
    if sites.RULES not in others or not any(r.get("site") == sites.RULES_SITE_ID for r in ran):
        return {"checked": False, "ok": True}
    found = await counts.rule_spread(dsn, sites.RULES_SITE_ID)
    problems = sites.rule_problems(found)
    say(
        f"rules site: {sum(found.values()):,} events under "
        + ", ".join(sorted({k[0] for k in found}))
        + (" -> OK: every place matched its rule" if not problems else " -> " + "; ".join(problems))
    )
    spread = [
        {"rule": k[0], "country": k[1], "region": k[2], "gpc": k[3], "events": n}
        for k, n in sorted(found.items(), key=str)
    ]
    return {"checked": True, "ok": not problems, "problems": problems, "events": spread}


async def bench_on(
    args: argparse.Namespace,
    procs: servers.Processes,
    wrk: str,
    dsn: str,
    pg_pid: int,
    started: float,
    machine: dict[str, Any],
) -> int:
    admin_key = "cmp_live_root_" + secrets.token_urlsafe(32)
    ref_port = servers.free_port()
    ref_proc = procs.start("reference", servers.reference_argv(ref_port))
    connector = aiohttp.TCPConnector(limit=args.prefill_connections + 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            await servers.wait_ready(session, f"http://127.0.0.1:{ref_port}/", ref_proc)
        except RuntimeError as exc:
            say(f"reference failed to start: {exc}\n{procs.log_tail('reference')}")
            return 1
        ref = Server("reference", ref_port, ref_proc.pid)

        # The pre-fill may use more workers than the measured server (it is the slow
        # part of the run); the measured cmp then starts fresh on the filled database.
        separate = args.prefill_workers != args.workers
        started_cmp = await start_cmp(
            procs,
            session,
            "cmp-prefill" if separate else "cmp",
            args.prefill_workers,
            dsn,
            admin_key,
            args.data_dir,
        )
        if started_cmp is None:
            return 1
        cmp_proc, cmp_base = started_cmp
        keys = await seed.setup_site(session, cmp_base, admin_key)
        filler = Server("cmp", int(cmp_base.rsplit(":", 1)[1]), cmp_proc.pid, db_pid=pg_pid)
        prefill_rss = RssSampler(filler.worker_pids(), interval=0.5).start()
        prefill, prefill_cost = await run_prefill(args, session, cmp_base, filler)
        others, others_info = await setup_other_sites(args, session, cmp_base, admin_key)
        await prefill_rss.stop()
        say(f"settle: VACUUM ANALYZE after the pre-fill took {await counts.settle(dsn):.1f} s")
        if separate:
            procs.stop([cmp_proc])
            started_cmp = await start_cmp(
                procs, session, "cmp", args.workers, dsn, admin_key, args.data_dir
            )
            if started_cmp is None:
                return 1
            cmp_proc, cmp_base = started_cmp
        say(
            f"cmp: measured on {cmp_base} (pid {cmp_proc.pid}, {args.workers} worker(s)); "
            f"reference on http://127.0.0.1:{ref_port}"
        )
        backlog, waited = await counts.wait_integrated(dsn)
        say(f"settle: {backlog:,} pre-filled records integrated into the trees in {waited:.1f} s")
        cmp = Server("cmp", int(cmp_base.rsplit(":", 1)[1]), cmp_proc.pid, db_pid=pg_pid)
        load = LoadConfig(
            site=seed.SITE_ID,
            origin=seed.ORIGIN,
            read_key=keys.read,
            subjects=args.subjects,
            others=others,
        )
        whole = RssSampler(cmp.worker_pids(), interval=0.5).start()

        can_export = await export_available(session, cmp_base)
        duration = fit_duration(args, time.perf_counter() - started, can_export)
        say(
            f"runs: {duration} s each (ingest +{GRACE_SECONDS} s grace, so that every request "
            f"sent is answered and counted)"
        )
        runs = await run_matrix(args, wrk, cmp, ref, load, duration)
        half = await run_half_rate(runs, cmp, ref, load, duration)
        profiled = await run_profile(args, wrk, cmp, load, duration)

        ingest = [
            r
            for r in runs + half + profiled.get("runs", [])
            if r["server"] == "cmp" and r["events_per_request"]
        ]
        total, by_nonce = await counts.stored_counts(
            dsn, (seed.SITE_ID, sites.RULES_SITE_ID), [r["nonce"] for r in ingest]
        )
        checked = counts.check(prefill.accepted, ingest, total, by_nonce)
        rules_checked = await check_rules(dsn, ingest, others)
        if can_export:
            say("export: streaming the whole log ...")
            export = await measure_export(session, cmp_base, seed.SITE_ID, keys.audit, cmp)
        else:
            export = {"available": False}
        await whole.stop()
        if cmp_proc.poll() is not None:
            say(f"cmp exited early with {cmp_proc.returncode}:\n{procs.log_tail('cmp')}")

    rss_peak = max(whole.peak_mib, prefill_rss.peak_mib)
    rows = report.summarize(runs)
    found = report.targets(rows, half, rss_peak, export)
    wall = time.perf_counter() - started
    say("\n## Closed loop (wrk -t2, median of rounds; latency, CPU and RSS are cmp's)\n")
    say(report.table(rows))
    say("\n## Open loop at half of cmp's best rate (loadtest/openloop.py)\n")
    say(report.half_rate_table(half))
    say(
        f"\nbatch ingest (prefill, {args.prefill_workers} worker(s), "
        f"{args.prefill_connections} connections): {prefill.accepted:,} events in "
        f"{prefill.seconds:.1f} s = {prefill.events_per_second:,.0f} events/s, "
        f"{prefill_cost['cpu_us_per_req']:.0f} µs cmp CPU/event"
    )
    say(
        f"stored events: {checked['stored']:,}, acknowledged: {checked['acknowledged']:,} "
        f"over prefill + {checked['runs_checked']} ingest runs -> "
        + (
            "OK: nothing lost, nothing doubled"
            if checked["ok"]
            else "MISMATCH: " + "; ".join(checked["problems"])
        )
        + ("" if checked["exact_counting"] else " (some requests unanswered: range check)")
    )
    say(report.export_line(export))
    say("\n## Targets\n")
    say(report.targets_table(found))
    say(
        f"\nwall time: {wall:.0f} s"
        + (f" (over the {args.budget:.0f} s budget)" if wall > args.budget else "")
    )
    report.write_json(
        {
            "machine": {**machine, "loadavg_at_end": os.getloadavg()},
            "config": {
                "rounds": args.rounds,
                "duration_s": duration,
                "grace_s": GRACE_SECONDS,
                "concurrency": args.concurrency,
                "subjects": args.subjects,
                "workers": args.workers,
                "prefill_workers": args.prefill_workers,
                "quick": args.quick,
                "scenarios": [s.name for s in args.scenario_list],
                "prefill_connections": args.prefill_connections,
                "budget_s": args.budget,
            },
            "prefill": {
                "events": prefill.accepted,
                "duplicates": prefill.duplicates,
                "seconds": round(prefill.seconds, 2),
                "events_per_s": round(prefill.events_per_second, 1),
                **prefill_cost,
            },
            "summary": rows,
            "runs": runs,
            "half_rate": half,
            "counts": checked,
            "sites": others_info,
            "rules": rules_checked,
            "export": export,
            "profile": profiled.get("profile"),
            "rss_peak_per_worker_mib": round(rss_peak, 1),
            "targets": [
                {"name": t.name, "wanted": t.wanted, "measured": t.measured, "verdict": t.verdict}
                for t in found
            ],
            "wall_s": round(wall, 1),
        },
        args.out,
    )
    say(f"results: {args.out}")
    return 0 if checked["ok"] and rules_checked["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C must reach us even when started from a shell that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_exit)
    import uvloop

    if args.topology:
        from loadtest import topology

        return uvloop.run(topology.measure(args))
    with servers.Processes(args.data_dir / "logs") as procs:
        try:
            return uvloop.run(bench(args, procs))
        except KeyboardInterrupt:
            say("\nloadtest: interrupted; stopping the servers")
            return 130
        except SystemExit as exc:
            say(f"\nloadtest: stopped by signal; stopping the servers (exit {exc.code})")
            raise


if __name__ == "__main__":
    sys.exit(main())
