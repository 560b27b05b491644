"""Nothing lost, nothing doubled: acknowledged events against the stored log.

Every load run gives its event ids a run nonce as their first 8 hex digits, so the
database can say how many events of each run it holds. A run whose every request was
answered (`sent == received`, no socket errors) must have exactly its 2xx'd events
stored; otherwise the unanswered requests may or may not have been committed, and the
stored count must lie between the acknowledged and the sent events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg


async def stored_counts(
    dsn: str, sites: str | Sequence[str], nonces: list[str]
) -> tuple[int, dict[str, int]]:
    """All events of the site(s), and the events per run nonce."""
    wanted = [sites] if isinstance(sites, str) else list(sites)
    conn = await asyncpg.connect(dsn)
    try:
        total: int = await conn.fetchval(
            "SELECT count(*) FROM consent_events WHERE site_id = any($1::text[])", wanted
        )
        rows = await conn.fetch(
            "SELECT left(event_id::text, 8) AS nonce, count(*) AS n FROM consent_events"
            " WHERE site_id = any($1::text[]) AND left(event_id::text, 8) = any($2::text[])"
            " GROUP BY 1",
            wanted,
            nonces,
        )
    finally:
        await conn.close()
    return total, {r["nonce"]: r["n"] for r in rows}


async def rule_spread(dsn: str, site: str) -> dict[tuple[str, str | None, str | None, bool], int]:
    """The site's events per (rule, country, region, gpc) they were recorded with."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT rule, country, region, coalesce(gpc, false) AS gpc, count(*) AS n"
            " FROM consent_events WHERE site_id = $1 GROUP BY 1, 2, 3, 4",
            site,
        )
    finally:
        await conn.close()
    return {(r["rule"], r["country"], r["region"], r["gpc"]): r["n"] for r in rows}


def _sent_events(run: dict[str, Any]) -> int:
    return int(run["sent"]) * int(run["events_per_request"])


def _exact(run: dict[str, Any]) -> bool:
    if "exact" in run:
        return bool(run["exact"])
    return bool(run["unanswered"] == 0 and run["connection_errors"] == 0)


def check(
    prefill_accepted: int, ingest_runs: list[dict[str, Any]], total: int, by_nonce: dict[str, int]
) -> dict[str, Any]:
    """Per-run and overall verdicts; marks each run dict with `stored`."""
    problems = []
    for run in ingest_runs:
        stored = by_nonce.get(run["nonce"], 0)
        run["stored"] = stored
        acked = run["events_2xx"]
        if _exact(run):
            if stored != acked:
                problems.append(
                    f"{run['scenario']} c={run.get('connections')} nonce "
                    f"{run['nonce']}: {acked} acknowledged, {stored} stored"
                )
        elif not acked <= stored <= _sent_events(run):
            problems.append(
                f"{run['scenario']} nonce {run['nonce']}: {acked} acknowledged, "
                f"{stored} stored, {_sent_events(run)} sent"
            )
    in_runs = sum(by_nonce.values())
    if total - in_runs != prefill_accepted:
        problems.append(f"prefill: {prefill_accepted} acknowledged, {total - in_runs} stored")
    acknowledged = prefill_accepted + sum(r["events_2xx"] for r in ingest_runs)
    return {
        "stored": total,
        "acknowledged": acknowledged,
        "exact_counting": all(_exact(r) for r in ingest_runs),
        "runs_checked": len(ingest_runs),
        "problems": problems,
        "ok": not problems,
    }


async def settle(dsn: str) -> float:
    """VACUUM ANALYZE the tables the pre-fill just grew; returns the seconds it took.

    Otherwise autovacuum starts on a million fresh rows during the first measured runs
    and takes CPU from the shared cores while cmp is measured (seen: PostgreSQL's CPU
    per state read jumped from ~20 to 76 µs in one run), but never from the reference.
    """
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        await conn.execute(
            "VACUUM (ANALYZE) consent_events, consent_state, log_heads, subject_links"
        )
    finally:
        await conn.close()
    return time.perf_counter() - started


async def integration_backlog(conn: asyncpg.Connection) -> int:
    """Records of every site's log not in its Merkle tree yet."""
    backlog: int = await conn.fetchval(
        "SELECT coalesce(sum(h.seq - coalesce(t.size, 0)), 0)::bigint"
        " FROM log_heads h LEFT JOIN log_trees t ON t.site_id = h.site_id"
    )
    return backlog


async def wait_integrated(dsn: str, within_s: float = 600.0) -> tuple[int, float]:
    """Wait until the served cmp has integrated every record into the trees; returns the
    backlog found and the seconds it took. The integration runs in the server process
    (cmp.treelog), so a pre-fill's backlog would be measured with the first runs."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        first = backlog = await integration_backlog(conn)
        while backlog > 0:
            if time.perf_counter() - started > within_s:
                raise RuntimeError(f"{backlog} records still not integrated after {within_s:.0f} s")
            await asyncio.sleep(0.5)
            backlog = await integration_backlog(conn)
    finally:
        await conn.close()
    return first, time.perf_counter() - started
