"""`python -m loadtest.atsize` (`make bench-atsize`): the consent log at 0, 1 M and 20 M events.

Keeps an embedded PostgreSQL in its own data directory outside the checkout
(`--data-dir`, default `$CMP_ATSIZE_DATA` or /work/atsize-data), with one database per
size (`atsize_0`, `atsize_1000000`, `atsize_20000000`) filled once by
`loadtest.atsize_fill` and recorded in `atsize.json` there; a repeated run finds them
and skips the fill. Each run then checks a sample site's export with `cmpd verify` (and
its Merkle root against the stored tree), and measures every size on a copy of its
database (`loadtest.atsize_measure`), printing one markdown table (`atsize_table`).
EXPLAIN of the request-path queries at the largest size goes to
`loadtest/results/atsize-explain.txt`. The impressions part (`loadtest.atsize_impressions`,
`--impressions N` a month, 0 for none) fills the largest size's database with what N
impressions a month leave (once; `impressions` in `atsize.json`) and measures the stats
read of the big site and a mid one on it; `--impressions-only` fills what is missing and
measures only that (its own results files).

    python -m loadtest.atsize                  # fill what is missing, then measure
    python -m loadtest.atsize --fill-only      # just the pre-fill
    python -m loadtest.atsize --clean          # remove the data directory
    python -m loadtest.atsize --impressions-only   # the impressions' stats read alone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from cmp.audit import merkle
from cmp.audit.chain import hashed_part
from cmp.canonical import canonical_json
from cmp.store import stats as stats_store
from cmp.store.db import connect
from cmp.store.migrate import migrate
from loadtest import (
    atsize_explain,
    atsize_fill,
    atsize_impressions,
    atsize_measure,
    atsize_table,
    report,
    servers,
)
from loadtest import atsize_gen as gen
from loadtest.report import say

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("CMP_ATSIZE_DATA", "/work/atsize-data"))
MARKER = "atsize.json"
# Bumped when a filled database can no longer be measured. Not for a new record version:
# a point's `record_version` says which one its fill wrote (absent: 1), and a fill of
# version 1 records, migrated, is a log of both versions, as a real upgraded one is.
# 2: version 2 gained its rule, location, impression and user fields before its release,
# so a fill of the earlier version 2 records no longer verifies.
FILL_VERSION = 2
SAMPLE_SITE = 10  # a mid-size site of the skewed tail: exported and verified every run


def memory_size(text: str) -> str:
    """A PostgreSQL memory setting as `ALTER SYSTEM` takes it (8GB, 512MB)."""
    if not re.fullmatch(r"[1-9][0-9]{0,6}(kB|MB|GB)", text):
        raise argparse.ArgumentTypeError(f"{text!r}: a size like 512MB or 2GB")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.atsize", description=__doc__.splitlines()[0]
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--sizes", default="0,1000000,20000000", help="comma-separated events per point")
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=2, help="wrk runs per scenario and size")
    p.add_argument(
        "--shared-buffers",
        type=memory_size,
        help="PostgreSQL shared_buffers for this run, e.g. 2GB (default: PostgreSQL's, 128MB)",
    )
    p.add_argument(
        "--impressions",
        type=int,
        default=200_000_000,
        help="impressions a month across the sites, filled into the largest size (0: none)",
    )
    p.add_argument(
        "--impressions-only",
        action="store_true",
        help="fill what is missing, then measure only the impressions' stats read",
    )
    p.add_argument("--fill-only", action="store_true")
    p.add_argument("--clean", action="store_true", help="remove --data-dir and stop")
    p.add_argument("--out", type=Path, help="default: results/atsize.json")
    p.add_argument("--explain-out", type=Path, help="default: results/atsize-explain.txt")
    args = p.parse_args(argv)
    if args.impressions < 0 or (args.impressions_only and not args.impressions):
        p.error("--impressions: a count of impressions a month (> 0 with --impressions-only)")
    # The impressions alone go to files of their own, so the full run's stay whole.
    stem = "atsize-impressions" if args.impressions_only else "atsize"
    args.out = args.out or report.RESULTS / f"{stem}.json"
    args.explain_out = args.explain_out or report.RESULTS / f"{stem}-explain.txt"
    args.size_list = sorted({int(s) for s in args.sizes.split(",")})
    return args


async def bring_up_to_date(dsn: str) -> tuple[list[str], int]:
    """A filled database follows the code's schema (forward-only), and its stats are
    rolled up through the last closed day as the server's maintenance would have done
    (the pre-fill writes past `received_at`s directly, so each copy starts rolled up).
    Returns the migrations applied and the site-days rolled up."""
    conn = await connect(dsn)
    try:
        applied = await migrate(conn)
        days = await stats_store.roll_up(conn)
    finally:
        await conn.close()
    return applied, days


def load_marker(data_dir: Path) -> dict[str, Any]:
    try:
        found: dict[str, Any] = json.loads((data_dir / MARKER).read_text())
        return found
    except (OSError, ValueError):
        return {}


def save_marker(data_dir: Path, marker: dict[str, Any]) -> None:
    tmp = data_dir / (MARKER + ".part")
    tmp.write_text(json.dumps(marker, indent=1) + "\n")
    tmp.replace(data_dir / MARKER)


def disk(path: Path) -> dict[str, int]:
    usage = shutil.disk_usage(path)
    used = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"free_bytes": usage.free, "data_dir_bytes": used}


def _export_and_verify(dsn: str, site: str, out: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMP_")}
    env.update({"CMP_DATABASE_URL": dsn, "CMP_DATA_DIR": str(out.parent / "cmp")})
    run = [sys.executable, "-m", "cmp"]
    export = subprocess.run(
        [*run, "export", "--site", site, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    verify = subprocess.run(
        [*run, "verify", str(out)], env=env, capture_output=True, text=True, timeout=1800
    )
    leaves = []
    versions: dict[str, int] = {}
    with out.open("rb") as fh:
        for line in fh:
            row = json.loads(line)
            leaves.append(merkle.leaf_hash(canonical_json(hashed_part(row))))
            versions[str(row["v"])] = versions.get(str(row["v"]), 0) + 1
    out.unlink()
    root = merkle.tree_root(len(leaves), merkle.list_getter(leaves)) if leaves else None
    return {
        "site": site,
        "records": len(leaves),
        "record_versions": versions,
        "export_exit": export.returncode,
        "verify_exit": verify.returncode,
        "verify_says": verify.stdout.strip()[-300:],
        "root": root,
    }


async def check_sample(dsn: str, info: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """Export a sample site with `cmpd export`, verify it with `cmpd verify`, and fold the
    exported records into a Merkle root: it must be the stored tree's root."""
    site = atsize_fill.site_id(min(SAMPLE_SITE, info["sites"] - 1))
    found = await asyncio.to_thread(
        _export_and_verify, dsn, site, data_dir / f"sample-{site}.jsonl"
    )
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval("SELECT root FROM log_trees WHERE site_id = $1", site)
    finally:
        await conn.close()
    root = found.pop("root")
    return {**found, "tree_root_matches": root is not None and bytes(stored or b"") == root}


async def main_async(args: argparse.Namespace, procs: servers.Processes) -> int:
    data_dir: Path = args.data_dir
    marker = load_marker(data_dir)
    if (
        marker.get("version") != FILL_VERSION
        or marker.get("sites") != args.sites
        or marker.get("seed") != args.seed
    ):
        now = datetime.now(UTC)
        marker = {
            "version": FILL_VERSION,
            "sites": args.sites,
            "seed": args.seed,
            "start": gen.month_start(now, args.months).isoformat(),
            "end": gen.month_start(now).isoformat(),
            "points": {},
        }
    pg = servers.start_postgres(data_dir)
    server_dsn = str(pg.get_uri())
    shared_buffers = await servers.set_shared_buffers(pg, server_dsn, args.shared_buffers)
    say(f"atsize: PostgreSQL shared_buffers = {shared_buffers}")
    conn = await asyncpg.connect(server_dsn)
    try:
        existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
    finally:
        await conn.close()
    start, end = datetime.fromisoformat(marker["start"]), datetime.fromisoformat(marker["end"])
    for events in args.size_list:
        info = marker["points"].get(str(events))
        if info and info["database"] in existing:
            say(
                f"atsize: {events:,} events: reusing database {info['database']} "
                f"(filled {info['filled_at']}, record version {info.get('record_version', 1)})"
            )
            continue
        space = disk(data_dir)
        say(
            f"atsize: filling {events:,} events over {args.sites} sites, "
            f"{marker['start'][:7]} … {marker['end'][:7]} (free disk "
            f"{space['free_bytes'] / 2**30:.0f} GiB; load average {os.getloadavg()[0]:.1f})"
        )
        info = await atsize_fill.fill(
            server_dsn,
            f"atsize_{events}",
            total=events,
            sites=args.sites,
            start=start,
            end=end,
            seed_value=args.seed,
            procs=procs,
            data_dir=data_dir,
        )
        info["filled_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        info["disk_after"] = disk(data_dir)
        marker["points"][str(events)] = info
        save_marker(data_dir, marker)
        say(
            f"  filled in {info['seconds']['total']:.0f} s: {info['events_per_s']:,} events/s "
            f"overall, {info['rows_events_per_s']:,} events/s for the records; "
            f"{json.dumps(info['seconds'])}"
        )
    points = [marker["points"][str(e)] for e in args.size_list]
    for info in points:
        applied, days = await bring_up_to_date(servers.with_database(server_dsn, info["database"]))
        if applied:
            say(f"atsize: {info['database']}: applied {', '.join(applied)}")
        if days:
            say(f"atsize: {info['database']}: stats rolled up for {days:,} site-days")
    if args.impressions:  # after the migrations: the fill writes the current schema
        await fill_impressions(server_dsn, marker, points[-1], args.impressions, data_dir)
    checks = []
    for info in points:
        if info["events"] and not args.impressions_only:
            check = await check_sample(
                servers.with_database(server_dsn, info["database"]), info, data_dir
            )
            say(
                f"atsize: {info['database']}: sample {check['site']} ({check['records']:,} "
                f"records, versions {check['record_versions']}): cmpd verify exit "
                f"{check['verify_exit']}, tree root matches: {check['tree_root_matches']}"
            )
            checks.append(check)
    if any(c["verify_exit"] or not c["tree_root_matches"] for c in checks):
        say("atsize: the sample check FAILED")
        return 1
    if args.fill_only:
        return 0
    shown = None
    if args.impressions:
        shown = await atsize_impressions.measure(
            servers.with_database(server_dsn, points[-1]["database"]),
            marker["impressions"],
            {"big": atsize_fill.site_id(0), "mid": atsize_fill.site_id(SAMPLE_SITE)},
        )
    if args.impressions_only:
        assert shown is not None
        return await _report_impressions(args, shown, shared_buffers)
    wrk = servers.ensure_wrk()
    results = []
    explain = ""
    for info in points:
        say(f"atsize: measuring {info['events']:,} events (a copy of {info['database']}) ...")
        largest = info is points[-1]
        result, text = await atsize_measure.measure_point(
            server_dsn, info, procs, wrk, data_dir, args.duration, args.rounds, largest
        )
        results.append(result)
        explain = text or explain
    if shown:
        results[-1]["impressions"] = shown[0]
        explain += "\n" + shown[1]
    doc = {
        "machine": report.machine(),
        "loadavg_1m_end": os.getloadavg()[0],
        "shared_buffers": shared_buffers,
        "fill": marker["points"],
        "checks": checks,
        "points": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(_write, args, doc, explain)
    say("")
    say(atsize_table.table(results))
    if results and results[-1].get("explain"):
        say("")
        say(f"EXPLAIN at {results[-1]['events_filled']:,} events ({args.explain_out.name}):")
        say(atsize_explain.table(results[-1]["explain"]))
    if shown:
        say("")
        say(atsize_impressions.table(shown[0]))
    return 0


async def fill_impressions(
    server_dsn: str, marker: dict[str, Any], info: dict[str, Any], per_month: int, data_dir: Path
) -> None:
    """The impressions part in the largest size's database, unless it holds them already
    (of this many a month, since that database's fill); recorded in the marker."""
    found = marker.get("impressions")
    if found is not None and atsize_impressions.is_current(found, per_month, info):
        say(
            f"atsize: {per_month:,} impressions a month: reusing those in {info['database']}"
            f" (filled {found['filled_at']}, as of {found['clock']})"
        )
        return
    say(
        f"atsize: filling {per_month:,} impressions a month into {info['database']} "
        f"(load average {os.getloadavg()[0]:.1f}) ..."
    )
    first = datetime.fromisoformat(marker["start"]).date()
    record = await atsize_impressions.fill(
        servers.with_database(server_dsn, info["database"]), per_month, info, first
    )
    record["disk_after"] = disk(data_dir)
    marker["impressions"] = record
    save_marker(data_dir, marker)
    say(
        f"  filled in {record['seconds']['total']:.0f} s: {record['raw_rows']:,} raw rows, "
        f"{record['rollup_rows']:,} rollup rows; {json.dumps(record['seconds'])}"
    )


async def _report_impressions(
    args: argparse.Namespace, shown: tuple[dict[str, Any], str], shared_buffers: str
) -> int:
    doc = {
        "machine": report.machine(),
        "loadavg_1m_end": os.getloadavg()[0],
        "shared_buffers": shared_buffers,
        "impressions": shown[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(_write, args, doc, shown[1])
    say("")
    say(atsize_impressions.table(shown[0]))
    return 0


def _write(args: argparse.Namespace, doc: dict[str, Any], explain: str) -> None:
    args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    if explain:
        args.explain_out.write_text(explain)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.clean:
        pid_file = args.data_dir / "pg" / "postmaster.pid"
        if pid_file.exists() and servers._alive(int(pid_file.read_text().split()[0])):
            say(f"{args.data_dir}: its PostgreSQL is running (a run is going on?): not removed")
            return 1
        if args.data_dir.exists():
            shutil.rmtree(args.data_dir)
            say(f"removed {args.data_dir}")
        return 0
    args.data_dir.mkdir(parents=True, exist_ok=True)
    with servers.Processes(args.data_dir / "logs") as procs:
        return asyncio.run(main_async(args, procs))


if __name__ == "__main__":
    raise SystemExit(main())
