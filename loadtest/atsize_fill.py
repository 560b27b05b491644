"""The at-size pre-fill: sites through the admin API, records by COPY, indexes after.

1. cmp (a real `cmpd serve`) migrates a fresh database and creates the sites through
   its admin API, each with the bench policy (`loadtest.seed`); then it is stopped.
2. The past months' partitions are made as plain tables without indexes, and the
   keys of `consent_event_ids` and `consent_state` are dropped (a fresh database: no
   one else writes).
3. Worker processes (one per core) make each site's records, chain and tree
   (`loadtest.atsize_gen`) and COPY them in big batches, with the ids, the states,
   the tiles, the tree and the chain head.
4. The indexes are built (two connections), each month is attached to the log, the
   keys come back, and everything is VACUUM ANALYZEd so that the measured runs do not
   meet autovacuum or unset hint bits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import secrets
import time
from collections import defaultdict
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg

from cmp.audit.record import RECORD_VERSION
from loadtest import atsize_gen as gen
from loadtest import seed, servers
from loadtest.report import say

STATE_COLS = (
    "site_id",
    "subject_id",
    "seq",
    "event_id",
    "policy_version",
    "action",
    "purposes",
    "services",
    "gpc",
    "recorded_at",
)
FLUSH_ROWS = 20_000
WORK_MEM = "1GB"  # index builds sort in memory (24 GiB machine, two at a time)


def site_id(i: int) -> str:
    return f"site-{i:04d}"


async def create_sites(base: str, admin_key: str, count: int) -> None:
    """Every site through the admin API, as a tenant would, eight requests at a time."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    gate = asyncio.Semaphore(8)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        sid = site_id(i)
        body = {
            **seed.site_body(),
            "name": f"At-size shop {i}",
            "origins": [f"https://{sid}.example"],
        }
        url = f"{base}/v1/sites/{sid}"
        async with gate:
            async with session.put(url, json=body, headers=admin) as resp:
                await seed._expect(resp, 201, f"create {sid}")
            async with session.post(
                f"{url}/policies", json=seed.policy_body(), headers=admin
            ) as resp:
                await seed._expect(resp, 201, f"policy of {sid}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, i) for i in range(count)))


async def _with_cmp(dsn: str, procs: servers.Processes, data_dir: Any, sites: int) -> None:
    admin = "cmp_live_root_" + secrets.token_urlsafe(32)
    port = servers.free_port()
    proc = procs.start(
        "cmp-fill", servers.cmp_argv(1), servers.cmp_env(dsn, port, admin, data_dir / "cmp")
    )
    try:
        async with aiohttp.ClientSession() as session:
            await servers.wait_ready(session, f"http://127.0.0.1:{port}/readyz", proc)
        await create_sites(f"http://127.0.0.1:{port}", admin, sites)
    finally:
        procs.stop([proc])


def plans_of(
    rows: list[asyncpg.Record], total: int, start: datetime, end: datetime, seed_value: int
) -> list[gen.SitePlan]:
    by_id = {r["site_id"]: r for r in rows}
    sizes = gen.site_sizes(total, len(rows)) if total else [0] * len(rows)
    return [
        gen.SitePlan(
            site_id(i),
            n,
            bytes(by_id[site_id(i)]["subject_key"]),
            by_id[site_id(i)]["content_sha256"],
            start,
            end,
            seed_value,
            heavy_subjects(i, n),
        )
        for i, n in enumerate(sizes)
    ]


def heavy_subjects(index: int, events: int) -> int:
    """The big site (the first) has `HEAVY_SUBJECTS` subjects of `HEAVY_RECORDS` records
    (the erasures measured) when it is big enough."""
    enough = index == 0 and events >= 4 * gen.HEAVY_SUBJECTS * gen.HEAVY_RECORDS
    return gen.HEAVY_SUBJECTS if enough else 0


def split_work(plans: list[gen.SitePlan], workers: int) -> list[list[gen.SitePlan]]:
    """Greedy by size: the big site alone is a quarter, so two workers stay even."""
    shares: list[list[gen.SitePlan]] = [[] for _ in range(workers)]
    load = [0] * workers
    for plan in sorted(plans, key=lambda p: -p.events):
        i = load.index(min(load))
        shares[i].append(plan)
        load[i] += plan.events
    return [s for s in shares if s]


def fill_worker(dsn: str, plans: list[gen.SitePlan], name: str) -> list[dict[str, Any]]:
    """Entry point of a worker process."""
    return asyncio.run(_fill_sites(dsn, plans, name))


async def _fill_sites(dsn: str, plans: list[gen.SitePlan], name: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    months: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    ids: list[tuple[Any, ...]] = []
    done, started, next_report = 0, time.perf_counter(), time.perf_counter() + 30
    out: list[dict[str, Any]] = []

    async def flush(month: str | None = None) -> None:
        for key in [month] if month else list(months):
            await conn.copy_records_to_table(
                f"consent_events_{key}", records=months.pop(key), columns=gen.EVENT_COLUMNS
            )
        if month is None or len(ids) >= FLUSH_ROWS:
            await conn.copy_records_to_table(
                "consent_event_ids", records=ids, columns=("site_id", "event_id", "body_digest")
            )
            ids.clear()

    try:
        for plan in plans:
            site = gen.SiteFill(plan)
            for month, row, id_row in site.rows():
                months[month].append(row)
                ids.append(id_row)
                if len(months[month]) >= FLUSH_ROWS:
                    await flush(month)
                done += 1
            assert site.out is not None
            s = site.out
            await conn.copy_records_to_table(
                "consent_state", records=site.states, columns=STATE_COLS
            )
            await conn.copy_records_to_table(
                "log_tiles",
                records=[(s.site_id, lv, ix, h) for (lv, ix), h in s.tiles.items()],
                columns=("site_id", "level", "idx", "hashes"),
            )
            if s.seq:
                await conn.execute(
                    "UPDATE log_heads SET seq = $2, hash = $3 WHERE site_id = $1",
                    s.site_id,
                    s.seq,
                    s.hash,
                )
                await conn.execute(
                    "INSERT INTO log_trees (site_id, size, root, chain_hash)"
                    " VALUES ($1, $2, $3, $4)",
                    s.site_id,
                    s.seq,
                    s.root,
                    s.hash,
                )
            out.append(
                {
                    "site_id": s.site_id,
                    "events": s.seq,
                    "subjects": s.subjects,
                    "heavy_subjects": s.heavy,
                    "heavy_records": gen.HEAVY_RECORDS,
                }
            )
            if time.perf_counter() >= next_report:
                next_report += 30
                say(f"  {name}: {done:,} events in {time.perf_counter() - started:.0f} s")
        await flush()
    finally:
        await conn.close()
    return out


async def prepare(conn: asyncpg.Connection, months: list[datetime]) -> None:
    for m in months:
        await conn.execute(
            f"CREATE TABLE consent_events_{gen.month_key(m)} (LIKE consent_events"
            " INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
    await conn.execute("ALTER TABLE consent_event_ids DROP CONSTRAINT consent_event_ids_pkey")
    await conn.execute("ALTER TABLE consent_state DROP CONSTRAINT consent_state_pkey")


def finishing_jobs(months: list[datetime]) -> tuple[list[str], list[str]]:
    """(index builds and attaches, vacuums): statements each run on its own, two at a time."""
    build = [
        "ALTER TABLE consent_event_ids ADD PRIMARY KEY (site_id, event_id)",
        "ALTER TABLE consent_state ADD PRIMARY KEY (site_id, subject_id)",
    ]
    vacuum = [
        "VACUUM (ANALYZE) consent_event_ids",
        "VACUUM (ANALYZE) consent_state",
        "VACUUM (ANALYZE) log_tiles",
        "VACUUM (ANALYZE) log_trees",
        "VACUUM (ANALYZE) log_heads",
    ]
    for m in months:
        t = f"consent_events_{gen.month_key(m)}"
        hi = gen.month_start(m, -1)
        build.append(
            f"ALTER TABLE {t} ADD PRIMARY KEY (site_id, seq, received_at);"
            f" CREATE INDEX ON {t} (site_id, subject_digest, seq);"
            f" CREATE INDEX ON {t} (site_id, received_at);"
            f" ALTER TABLE consent_events ATTACH PARTITION {t}"
            f" FOR VALUES FROM ('{m.isoformat()}') TO ('{hi.isoformat()}')"
        )
        vacuum.append(f"VACUUM (ANALYZE) {t}")
    vacuum.append("ANALYZE consent_events")  # the parent's own statistics
    return build, vacuum


async def run_jobs(dsn: str, jobs: list[str], connections: int = 2) -> None:
    queue = iter(jobs)

    async def worker() -> None:
        conn = await asyncpg.connect(dsn, server_settings={"maintenance_work_mem": WORK_MEM})
        try:
            for sql in queue:
                await conn.execute(sql)
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


async def fill(
    server_dsn: str,
    db_name: str,
    *,
    total: int,
    sites: int,
    start: datetime,
    end: datetime,
    seed_value: int,
    procs: servers.Processes,
    data_dir: Any,
) -> dict[str, Any]:
    """Make database `db_name` hold `total` events; returns what it holds and the timings."""
    t0 = time.perf_counter()
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{db_name}"')
    finally:
        await conn.close()
    dsn = servers.with_database(server_dsn, db_name)
    await _with_cmp(dsn, procs, data_dir, sites)
    t_sites = time.perf_counter() - t0
    months = gen.months_between(start, end)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT s.site_id, s.subject_key, p.content_sha256 FROM sites s"
            " JOIN policy_versions p ON p.site_id = s.site_id AND p.version = 1"
        )
        if total:
            await prepare(conn, months)
    finally:
        await conn.close()
    plans = plans_of(list(rows), total, start, end, seed_value)
    t1 = time.perf_counter()
    out: list[dict[str, Any]] = []
    if total:
        workers = split_work(plans, min(len(plans), max(1, os.cpu_count() or 1)))
        say(f"  {len(workers)} worker processes make {total:,} records of {sites} sites ...")
        ctx = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        with concurrent.futures.ProcessPoolExecutor(len(workers), mp_context=ctx) as pool:
            parts = await asyncio.gather(
                *(
                    loop.run_in_executor(pool, fill_worker, dsn, share, f"worker {i + 1}")
                    for i, share in enumerate(workers)
                )
            )
        out = [site for part in parts for site in part]
    t2 = time.perf_counter()
    build, vacuum = finishing_jobs(months if total else [])
    if not total:
        build = []  # nothing was dropped
    say(f"  rows in {t2 - t1:.0f} s; building indexes and attaching {len(months)} months ...")
    await run_jobs(dsn, build)
    t3 = time.perf_counter()
    say(f"  indexes in {t3 - t2:.0f} s; VACUUM ANALYZE ...")
    await run_jobs(dsn, vacuum)
    t4 = time.perf_counter()
    big = (
        max(out, key=lambda s: s["events"])
        if out
        else {"site_id": site_id(0), "events": 0, "subjects": 0, "heavy_subjects": 0}
    )
    return {
        "database": db_name,
        "events": total,
        "record_version": RECORD_VERSION,
        "sites": sites,
        "subjects": sum(s["subjects"] for s in out),
        "big_site": big,
        "months": [gen.month_key(m) for m in months] if total else [],
        "start": start.isoformat(),
        "end": end.isoformat(),
        "seed": seed_value,
        "seconds": {
            "sites": round(t_sites, 1),
            "rows": round(t2 - t1, 1),
            "indexes": round(t3 - t2, 1),
            "vacuum": round(t4 - t3, 1),
            "total": round(t4 - t0, 1),
        },
        "events_per_s": round(total / (t4 - t0)) if total else 0,
        "rows_events_per_s": round(total / (t2 - t1)) if total else 0,
        "loadavg_1m": os.getloadavg()[0],
    }
