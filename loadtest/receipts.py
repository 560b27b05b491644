"""Transparency-log costs at scale: `python -m loadtest.receipts [--records 1000000]`.

Starts embedded PostgreSQL and `cmpd serve` (one worker), pre-fills the bench site with
`--records` events through the collect API (100-event batches, 16 connections) while
the background job integrates them into the Merkle tree, and measures

- integration delay under that ingest load: a probe event every half second, timed
  from its 201 to the first 200 of its receipt (polled every 50 ms), plus the server's
  own `cmp_log_integration_delay_seconds` histogram;
- once the load stops: how long until the tree has caught up;
- latency (p50/p99/max) and size of receipts and inclusion proofs at the full size, and
  of consistency proofs between kept checkpoints, with `--concurrency` requests in flight;
- tiles read per proof (O(log N)), from the proof construction itself.

Results are printed and written as JSON (`--out`); loadtest/README.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import secrets
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from cmp.audit import merkle, tiles
from cmp.treelog import TREE_LOCK
from loadtest import seed, servers
from loadtest.report import say

ROOT = Path(__file__).resolve().parent.parent
HEADERS = {"Origin": seed.ORIGIN, "Content-Type": "application/json"}


def event_id(n: int) -> str:
    """A fixed UUID per pre-filled event, so receipts can be asked for later."""
    return str(uuid.UUID(bytes=hashlib.sha256(b"ev%d" % n).digest()[:16], version=4))


def batch(first: int, count: int) -> bytes:
    events = [
        {
            "event_id": event_id(n),
            "subject_id": f"s-{n}",
            "policy_version": 1,
            "action": ("accept_all", "reject_all")[n % 2],
        }
        for n in range(first, first + count)
    ]
    return json.dumps({"events": events}).encode()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def summary(ms: list[float], sizes: list[int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2) if ms else 0,
    }
    if sizes:
        out["bytes_mean"] = round(statistics.fmean(sizes))
        out["bytes_max"] = max(sizes)
    return out


async def prefill(
    session: aiohttp.ClientSession, base: str, records: int, connections: int
) -> float:
    url = f"{base}/v1/sites/{seed.SITE_ID}/events"
    starts = iter(range(0, records, seed.BATCH))
    started = time.perf_counter()
    done = 0
    next_report = started + 15

    async def worker() -> None:
        nonlocal done, next_report
        for first in starts:
            body = batch(first, min(seed.BATCH, records - first))
            for attempt in range(10):
                async with session.post(url, data=body, headers=HEADERS) as resp:
                    if resp.status == 503 and attempt < 9:
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    if resp.status != 201:
                        raise RuntimeError(f"prefill: HTTP {resp.status} {await resp.text()}")
                    done += (await resp.json())["accepted"]
                    break
            if time.perf_counter() >= next_report:
                next_report += 15
                say(f"  prefill: {done:,} events in {time.perf_counter() - started:.0f} s")

    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started


async def probe(
    session: aiohttp.ClientSession, base: str, stop: asyncio.Event, delays: list[float]
) -> None:
    """A fresh event every 0.5 s; its receipt polled until it is there."""
    site = f"{base}/v1/sites/{seed.SITE_ID}"

    async def one() -> None:
        ev = {
            "event_id": str(uuid.uuid4()),
            "subject_id": f"probe-{secrets.token_hex(6)}",
            "policy_version": 1,
            "action": "accept_all",
        }
        async with session.post(f"{site}/events", json=ev, headers={"Origin": seed.ORIGIN}) as r:
            if r.status != 201:
                return
        committed = time.perf_counter()
        url = f"{site}/receipts/{ev['event_id']}?subject_id={ev['subject_id']}"
        while True:
            async with session.get(url) as r:
                if r.status == 200:
                    delays.append(time.perf_counter() - committed)
                    return
            await asyncio.sleep(0.05)

    pending = []
    while not stop.is_set():
        pending.append(asyncio.create_task(one()))
        await asyncio.sleep(0.5)
    await asyncio.gather(*pending)


async def timed_gets(
    session: aiohttp.ClientSession, urls: list[str], headers: dict[str, str], concurrency: int
) -> tuple[list[float], list[int], int]:
    queue = iter(urls)
    ms: list[float] = []
    sizes: list[int] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for url in queue:
            t0 = time.perf_counter()
            async with session.get(url, headers=headers) as r:
                body = await r.read()
                if r.status != 200:
                    errors += 1
                    continue
            ms.append(1000 * (time.perf_counter() - t0))
            sizes.append(len(body))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ms, sizes, errors


async def metric(session: aiohttp.ClientSession, base: str, name: str) -> dict[str, float]:
    async with session.get(f"{base}/metrics") as r:
        text = await r.text()
    return {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith(name)
    }


async def run(args: argparse.Namespace, procs: servers.Processes) -> dict[str, Any]:
    pg = servers.start_postgres(args.data_dir)
    server_dsn = str(pg.get_uri())
    db_name, dsn = await servers.create_database(server_dsn)
    admin = "cmp_live_root_" + secrets.token_urlsafe(32)
    port = servers.free_port()
    env = servers.cmp_env(dsn, port, admin, args.data_dir / "cmp")
    env["CMP_LOG_INTEGRATION_SECONDS"] = str(args.interval)
    proc = procs.start("cmp", servers.cmp_argv(1), env)
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"records": args.records, "interval_s": args.interval}
    connector = aiohttp.TCPConnector(limit=64)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            await servers.wait_ready(session, f"{base}/readyz", proc)
            keys = await seed.setup_site(session, base, admin)
            audit = {"Authorization": f"Bearer {keys.audit}"}
            holder = None
            if args.backlog:
                # Hold the tree lock: the job skips, the whole pre-fill becomes a backlog.
                holder = await asyncpg.connect(dsn)
                await holder.execute("SELECT pg_advisory_lock($1)", TREE_LOCK)
            say(
                f"prefill: {args.records:,} events with the tree job every {args.interval} s"
                f"{' held off (backlog)' if args.backlog else ''} ..."
            )
            stop, delays = asyncio.Event(), []
            prober = (
                None if args.backlog else asyncio.create_task(probe(session, base, stop, delays))
            )
            seconds = await prefill(session, base, args.records, 16)
            stop.set()
            if holder is not None:
                await holder.close()
            load_end = time.perf_counter()
            if prober is not None:
                await prober
            result["prefill"] = {
                "seconds": round(seconds, 1),
                "events_per_s": round(args.records / seconds),
            }
            result["probe_delay"] = summary([1000 * d for d in delays])
            hist = await metric(session, base, "cmp_log_integration_delay_seconds")
            result["server_delay_histogram"] = hist
            # Caught up: the tree holds the whole log.
            conn = await asyncpg.connect(dsn)
            try:
                while True:
                    row = await conn.fetchrow(
                        "SELECT t.head_size, h.seq FROM log_heads h JOIN log_trees t "
                        "USING (site_id) WHERE site_id = $1",
                        seed.SITE_ID,
                    )
                    if row and row["head_size"] == row["seq"]:
                        break
                    await asyncio.sleep(0.05)
                caught_up = time.perf_counter() - load_end
                result["caught_up_after_load_s"] = round(caught_up, 2)
                if args.backlog:
                    result["backlog_records_per_s"] = round(row["seq"] / caught_up)
                size = row["seq"]
                kept = [
                    r["size"]
                    for r in await conn.fetch(
                        "SELECT size FROM log_tree_heads WHERE site_id = $1 ORDER BY size",
                        seed.SITE_ID,
                    )
                ]
                tile_rows = await conn.fetchval("SELECT count(*) FROM log_tiles")
                tile_bytes = await conn.fetchval("SELECT pg_total_relation_size('log_tiles')")
            finally:
                await conn.close()
            result["tree_size"] = size
            result["tiles"] = {"rows": tile_rows, "table_bytes": tile_bytes}
            rng = random.Random(7)
            picks = [rng.randrange(args.records) for _ in range(args.samples)]
            site = f"{base}/v1/sites/{seed.SITE_ID}"
            urls = [f"{site}/receipts/{event_id(n)}?subject_id=s-{n}" for n in picks]
            ms, sizes, errors = await timed_gets(session, urls, {}, args.concurrency)
            result["receipt"] = {**summary(ms, sizes), "errors": errors}
            urls = [f"{site}/log/proof/inclusion?index={n}&size={size}" for n in picks]
            ms, sizes, errors = await timed_gets(session, urls, audit, args.concurrency)
            result["inclusion"] = {**summary(ms, sizes), "errors": errors}
            pairs = [(a, b) for i, a in enumerate(kept) for b in kept[i + 1 :]] or [(1, size)]
            urls = [
                f"{site}/log/proof/consistency?from={a}&to={b}"
                for a, b in (rng.choice(pairs) for _ in range(args.samples // 5))
            ]
            ms, sizes, errors = await timed_gets(session, urls, audit, args.concurrency)
            result["consistency"] = {
                **summary(ms, sizes),
                "errors": errors,
                "kept_checkpoints": len(kept),
            }
            reads = [
                len(
                    tiles.tiles_for(
                        merkle.needed(lambda g, i=n: merkle.inclusion_proof(i, size, g))
                    )
                )
                for n in picks[:1000]
            ]
            result["tiles_per_inclusion_proof"] = {
                "mean": round(statistics.fmean(reads), 2),
                "max": max(reads),
            }
            result["nodes_read_per_inclusion_proof"] = len(
                merkle.needed(lambda g: merkle.inclusion_proof(size - 1, size, g))
            )
    finally:
        procs.stop_all()
        await servers.drop_database(server_dsn, db_name)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.receipts")
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--interval", type=float, default=1.0, help="CMP_LOG_INTEGRATION_SECONDS")
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument(
        "--backlog",
        action="store_true",
        help="hold the tree job off during the pre-fill; time the catch-up",
    )
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--data-dir", type=Path, default=ROOT / ".data" / "bench-receipts")
    p.add_argument("--out", type=Path, default=ROOT / "loadtest" / "results" / "receipts.json")
    args = p.parse_args(argv)
    with servers.Processes(args.data_dir / "logs") as procs:
        result = asyncio.run(run(args, procs))
    say(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
