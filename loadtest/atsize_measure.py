"""One size point of the at-size run: a clone of a filled database, cmp on it, the costs.

The filled database is never changed: each run measures a copy made by
`CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY` (the events ingested, the erasures and
the purge go with the copy, which is dropped afterwards), so a repeated run measures
the same log. On the copy: bytes per event, then cmp (`cmpd serve`, one worker, as
`make bench`) with wrk's single-event ingest, state read and 100-id lookup (the
`make bench` scripts, c=64), a subject's history, erasures and their WAL, exports of
the big site (the newest month, and all of it), EXPLAIN of the request-path queries,
and last a purge of the oldest month with ingest running beside it.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from cmp.audit.chain import subject_digest
from cmp.audit.signing import Signer
from cmp.maintenance import purge
from cmp.store.db import connect
from cmp.store.sqlfiles import queries
from loadtest import atsize_explain, servers
from loadtest import atsize_gen as gen
from loadtest.export import measure_export
from loadtest.receipts import pct, summary
from loadtest.report import say
from loadtest.runner import SCENARIOS, LoadConfig, Server, run_wrk

SPARE_DISK = 4 * 2**30  # WAL and the ingest of the run, beside the copy
PURGE_INGEST_PAUSE = 0.02  # seconds between a loop's events beside the purge


async def clone(server_dsn: str, source: str, name: str) -> float:
    t0 = time.perf_counter()
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        need = await conn.fetchval("SELECT pg_database_size($1)", source)
        where = await conn.fetchval("SELECT current_setting('data_directory')")
        free = shutil.disk_usage(where).free
        if free < need + SPARE_DISK:
            raise SystemExit(
                f"atsize: a copy of {source} needs {need / 2**30:.1f} GiB and "
                f"{SPARE_DISK / 2**30:.0f} GiB to spare; {free / 2**30:.1f} GiB "
                "are free"
            )
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}" STRATEGY FILE_COPY')
    finally:
        await conn.close()
    return time.perf_counter() - t0


async def sizes(conn: asyncpg.Connection) -> dict[str, Any]:
    events = int(await conn.fetchval("SELECT coalesce(sum(seq), 0) FROM log_heads"))
    row = await conn.fetchrow(
        "SELECT coalesce(sum(pg_table_size(i.inhrelid)), 0)::bigint AS heap,"
        " coalesce(sum(pg_indexes_size(i.inhrelid)), 0)::bigint AS idx FROM pg_inherits i"
        " WHERE i.inhparent = 'consent_events'::regclass"
    )
    ids = await conn.fetchval("SELECT pg_total_relation_size('consent_event_ids')")
    state = await conn.fetchval("SELECT pg_total_relation_size('consent_state')")
    states = await conn.fetchval(
        "SELECT reltuples::bigint FROM pg_class WHERE relname = 'consent_state'"
    )
    db = await conn.fetchval("SELECT pg_database_size(current_database())")
    per = max(events, 1)
    return {
        "events": events,
        "log_heap_bytes": row["heap"],
        "log_index_bytes": row["idx"],
        "ids_bytes": ids,
        "state_bytes": state,
        "states": max(states, 0),
        "database_bytes": db,
        "log_bytes_per_event": round((row["heap"] + row["idx"]) / per, 1),
        "with_ids_bytes_per_event": round((row["heap"] + row["idx"] + ids) / per, 1),
    }


def _parent(pid: int) -> int:
    """The parent of a process (of a PostgreSQL backend: the postmaster)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def _timed(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]
) -> float:
    t0 = time.perf_counter()
    async with session.request(method, url, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {url}: HTTP {resp.status}")
    return 1000 * (time.perf_counter() - t0)


async def explain_target(
    conn: asyncpg.Connection, site: str, subjects: int, months: list[str]
) -> atsize_explain.Target:
    key = bytes(await conn.fetchval("SELECT subject_key FROM sites WHERE site_id = $1", site))
    rng = random.Random(11)
    picks = [f"s-{rng.randrange(max(subjects, 1))}" for _ in range(100)]
    head = int(await conn.fetchval("SELECT seq FROM log_heads WHERE site_id = $1", site))
    rec = await conn.fetchrow(
        "SELECT event_id::text, subject_digest FROM consent_events WHERE site_id = $1 AND seq = $2",
        site,
        max(1, head // 2),
    )
    newest = months[-1] if months else gen.month_key(datetime.now(UTC))
    since = datetime(int(newest[:4]), int(newest[5:]), 1, tzinfo=UTC)
    size = max(head, 1)
    rollup = await conn.fetchrow(queries("stats")["select_rollup"], site)
    return atsize_explain.Target(
        site=site,
        subjects=picks,
        digest=subject_digest(key, picks[0]),
        event_id=rec["event_id"] if rec else "00000000-0000-4000-8000-000000000000",
        event_digest=rec["subject_digest"] if rec else "0" * 64,
        head_seq=head,
        since=since,
        until=gen.month_start(since, -1),
        tile_levels=[0, 0, 1],
        tile_indexes=[0, (size - 1) // 256, (size - 1) // 65536],
        stats_rollup=(rollup["from_day"], rollup["through_day"]) if rollup else None,
    )


def erasure_subjects(big: dict[str, Any]) -> list[str]:
    """The subjects to erase: the big site's `HEAVY_RECORDS`-record subjects, the top of
    its range (a fill older than them has 3 or 4 records there), so the state reads'
    subjects stay as they were."""
    subjects = big["subjects"]
    count = big.get("heavy_subjects") or gen.HEAVY_SUBJECTS
    return [f"s-{subjects - 1 - i}" for i in range(min(count, subjects))]


async def _tree_idle(conn: asyncpg.Connection, within_s: float = 30.0) -> bool:
    """Wait until the server's tree job has nothing to integrate or sign (so that it
    writes no WAL while an erasure is measured); False if it is still busy."""
    deadline = time.monotonic() + within_s
    while await conn.fetch(queries("tree")["select_sites_to_integrate"]):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def measure_erasures(
    session: aiohttp.ClientSession,
    dsn: str,
    site_url: str,
    headers: dict[str, str],
    subject_ids: list[str],
) -> dict[str, Any]:
    """Erase each subject through the API, one at a time with nothing else running (the
    tree job idle): latency, records erased, and the WAL written between the insert
    positions read on this connection before the request and after its answer."""
    ms: list[float] = []
    wal: list[float] = []
    records: list[int] = []
    busy = 0
    conn = await asyncpg.connect(dsn)
    try:
        for subject in subject_ids:
            busy += not await _tree_idle(conn)
            lsn0 = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
            t0 = time.perf_counter()
            async with session.delete(f"{site_url}/subjects/{subject}", headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"erasure of {subject}: HTTP {resp.status} {body[:200]!r}")
            ms.append(1000 * (time.perf_counter() - t0))
            wal.append(
                float(
                    await conn.fetchval(
                        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)", lsn0
                    )
                )
            )
            records.append(int(json.loads(body)["erased_events"]))
    finally:
        await conn.close()
    return {
        **summary(ms),
        "records_each": records,
        "wal_bytes_each": [round(w) for w in wal],
        "wal_bytes_p50": round(pct(wal, 50)),
        "wal_bytes_p99": round(pct(wal, 99)),
        "wal_bytes_max": round(max(wal, default=0)),
        "wal_bytes_per_record": round(sum(wal) / max(sum(records), 1)),
        "tree_busy": busy,
    }


async def _ingest_beside(
    session: aiohttp.ClientSession, base: str, site: str, done: asyncio.Event
) -> dict[str, Any]:
    """Single events, four in flight with a pause, until `done` and a second after:
    each latency is one event's wait, so a lock held on the log shows as the max."""
    url = f"{base}/v1/sites/{site}/events"
    headers = {"Origin": f"https://{site}.example", "Content-Type": "application/json"}
    ms: list[float] = []
    statuses: dict[int, int] = {}
    nonce = secrets.token_hex(4)

    async def one_loop(n: int) -> None:
        i = 0
        while not done.is_set():
            i += 1
            body = (
                f'{{"event_id":"{uuid.uuid4()}","subject_id":"purge-{nonce}-{n}-{i}",'
                '"policy_version":1,"action":"accept_all"}'
            )
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            ms.append(1000 * (time.perf_counter() - t0))
            await asyncio.sleep(PURGE_INGEST_PAUSE)

    await asyncio.gather(*(one_loop(n) for n in range(4)))
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    return {**summary(ms), "sent": len(ms), "ok": ok, "non_2xx": len(ms) - ok}


async def measure_purge(
    dsn: str,
    base: str,
    site: str,
    info: dict[str, Any],
    data_dir: Path,
    session: aiohttp.ClientSession,
) -> dict[str, Any]:
    """Retention set (in the purge's own transaction) so that the oldest month is past it;
    the purge runs with single-event ingest beside it from start to end."""
    first = datetime.fromisoformat(info["start"])
    second = gen.month_start(first, -1)
    days = (datetime.now(UTC) - second) // timedelta(days=1)
    oldest = f"consent_events_{gen.month_key(first)}"
    signer = await asyncio.to_thread(Signer.load_or_create, data_dir / "purge-signing-key.pem")
    conn = await connect(dsn)
    try:
        rows = int(await conn.fetchval(f"SELECT count(*) FROM {oldest}"))
        stop = asyncio.Event()
        ingest = asyncio.create_task(_ingest_beside(session, base, site, stop))
        await asyncio.sleep(2)
        lsn0 = await conn.fetchval("SELECT pg_current_wal_lsn()")
        t0 = time.perf_counter()
        async with conn.transaction():
            await conn.execute("UPDATE sites SET retention_days = $1", days)
            done = await purge(conn, signer)
        seconds = time.perf_counter() - t0
        wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn0)
        await asyncio.sleep(1)
        stop.set()
        beside = await ingest
        left = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", oldest)
    finally:
        await conn.close()
    return {
        "oldest_month_rows": rows,
        "seconds": round(seconds, 2),
        "wal_bytes": int(wal),
        "month_dropped": not left,
        "sites_purged": len(done),
        "records_purged": sum(p.deleted for p in done),
        "states_purged": sum(p.states for p in done),
        "ingest_beside": beside,
    }


async def measure_point(
    server_dsn: str,
    info: dict[str, Any],
    procs: servers.Processes,
    wrk: str | None,
    data_dir: Path,
    duration: int,
    rounds: int,
    explain: bool,
) -> tuple[dict[str, Any], str]:
    """Measure one filled database (on a copy); `wrk` None leaves out the wrk runs."""
    name = f"{info['database']}_run"
    copy_s = await clone(server_dsn, info["database"], name)
    dsn = servers.with_database(server_dsn, name)
    big = info["big_site"]["site_id"]
    result: dict[str, Any] = {
        "database": info["database"],
        "events_filled": info["events"],
        "clone_seconds": round(copy_s, 1),
    }
    explain_text = ""
    conn = await connect(dsn)
    try:
        result["sizes"] = await sizes(conn)
        pg_pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
        db_pid = await asyncio.to_thread(_parent, pg_pid)
    finally:
        await conn.close()
    admin = "cmp_live_root_" + secrets.token_urlsafe(32)
    port = servers.free_port()
    env = servers.cmp_env(dsn, port, admin, data_dir / "cmp")
    # No maintenance tick during the run: its first purge would race with the measured one.
    env["CMP_CHECKPOINT_INTERVAL_SECONDS"] = "3600"
    proc = procs.start(f"cmp-{name}", servers.cmp_argv(1), env)
    base = f"http://127.0.0.1:{port}"
    site_url = f"{base}/v1/sites/{big}"
    subjects = info["big_site"]["subjects"]
    try:
        async with aiohttp.ClientSession() as session:
            await servers.wait_ready(session, f"{base}/readyz", proc)
            keys = {}
            for scope in ("read", "audit"):
                async with session.post(
                    f"{site_url}/keys",
                    json={"scope": scope},
                    headers={"Authorization": f"Bearer {admin}"},
                ) as r:
                    keys[scope] = (await r.json())["key"]
            server = Server("cmp", port, proc.pid, db_pid)
            load = LoadConfig(big, f"https://{big}.example", keys["read"], max(subjects, 1000))
            runs: dict[str, list[dict[str, Any]]] = {}
            for _ in range(rounds if wrk else 0):
                for sc in SCENARIOS:
                    if sc.name != "ingest-10" and not sc.site and wrk:
                        run = await run_wrk(wrk, server, sc, 64, duration, load)
                        runs.setdefault(sc.name, []).append(run)
            result["wrk"] = runs
            rng = random.Random(5)
            audit = {"Authorization": f"Bearer {keys['audit']}"}
            ms = [
                await _timed(
                    session,
                    "GET",
                    f"{site_url}/subjects/s-{rng.randrange(subjects or 1)}/events",
                    audit,
                )
                for _ in range(100)
            ]
            result["history"] = summary(ms)
            root = {"Authorization": f"Bearer {admin}"}
            if subjects:
                result["erasure"] = await measure_erasures(
                    session, dsn, site_url, root, erasure_subjects(info["big_site"])
                )
            if info["months"]:
                newest = info["months"][-1]
                since = datetime(int(newest[:4]), int(newest[5:]), 1, tzinfo=UTC)
                until = gen.month_start(since, -1)
                query = f"&from={since.date().isoformat()}&to={until.date().isoformat()}"
                result["export_month"] = await measure_export(
                    session, base, big, keys["audit"], server, 1800, query
                )
            result["export_site"] = await measure_export(
                session, base, big, keys["audit"], server, 3600
            )
            if explain and info["events"]:
                conn = await connect(dsn)
                try:
                    target = await explain_target(conn, big, subjects, info["months"])
                    explain_text, result["explain"] = await atsize_explain.explain_all(conn, target)
                finally:
                    await conn.close()
            if info["months"]:
                say("  purge of the oldest month, ingest beside it ...")
                result["purge"] = await measure_purge(dsn, base, big, info, data_dir, session)
    finally:
        procs.stop([proc])
        conn = await asyncpg.connect(server_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
    return result, explain_text
