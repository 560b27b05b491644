"""The impressions part of the at-size run: what N impressions a month leave, and the stats.

Impressions are kept as docs/api.md and `cmp.store.impressions` say: raw rows in a
partition per UTC day for as long as the dedup and the day's unique-visitor count need
them (`RAW_DAYS` behind today), the closed days rolled up into `impression_days` and
their partitions dropped. The fill writes that state, into the largest size's database,
as it is at `CLOCK` on the fill's day D (the moment before D closes, when the raw days
are fullest): the rollup of every site's days from the fill's first month up to D, and
the raw partitions of D − RAW_DAYS … D, each a day's worth (D itself `CLOCK` of 24
hours), generated in PostgreSQL (`INSERT … SELECT generate_series`, in arrival order so
that each site's rows are spread over the day as ingest leaves them), skewed across the
sites as the events (`atsize_gen.site_sizes`: a quarter to the big site, a Zipf-like
tail). Recorded on its own in `atsize.json` (`impressions`), tied to the database's
fill, and filled again when that changes.

The measurement (no server, on the filled database itself): the store call the stats
endpoint and the stats page both make (`cmp.store.stats.select_stats`) timed over
repetitions for the big site and a mid one, with the default range (the 30 days before
`CLOCK` on D, per day), and `EXPLAIN (ANALYZE, BUFFERS)` of each of its queries; then
one refresh of the open day's provisional counts timed (the maintenance loop's
background cost, `cmp.store.impressions.refresh_provisional`) and the same reads timed
again after it. Its only write is those counts, deleted again at the end.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import asyncpg

from cmp.jurisdiction import DEFAULT_RULE
from cmp.store import impressions as impressions_store
from cmp.store import stats as stats_store
from cmp.store.db import connect
from cmp.store.impressions import RAW_DAYS
from cmp.store.sqlfiles import queries
from cmp.timerange import stats_range
from loadtest import atsize_explain
from loadtest import atsize_gen as gen
from loadtest.receipts import summary
from loadtest.report import say

# The hour of day D the fill stands for: the raw days are fullest just before D closes.
CLOCK: Final = timedelta(hours=23)
DAYS_PER_MONTH: Final = 30
REPEATS: Final = 21  # timed reads per site (the first prepares the statements)
ROLES: Final = ("big", "mid")
WORK_MEM: Final = "1GB"  # the arrival-order sort of a day, and the key's build

# One day's raw rows ($1 sites, $2 showings each): a site's `i`th showing of `n` is of
# visitor i mod (n / 1.3) (1.3 showings a visitor), of the banner 16 times in 20, the
# settings layer 3, a re-prompt 1, and arrives at its share of the day's $4 microseconds
# (jittered); the rows go in in arrival order, the sites' interleaved.
RAW_DAY = """
INSERT INTO {part} (site_id, day, impression_id, visitor, policy_version, surface,
                    variant, received_at, rule)
SELECT site_id, $3::date, gen_random_uuid(), visitor, 1, surface, '', received_at, $5
FROM (
    SELECT s.site_id,
           int8send(hashint8extended(g.i % greatest(s.n * 10 / 13, 1), hashtext(s.site_id))),
           CASE WHEN g.i % 20 < 16 THEN 'banner'
                WHEN g.i % 20 < 19 THEN 'settings' ELSE 'reprompt' END,
           $3::date::timestamp AT TIME ZONE 'UTC'
               + ((g.i - random()) * $4 / s.n) * interval '1 microsecond'
    FROM unnest($1::text[], $2::bigint[]) AS s (site_id, n)
    CROSS JOIN LATERAL generate_series(1, s.n) AS g (i)
) AS r (site_id, visitor, surface, received_at)
ORDER BY received_at
"""

# Every site's rolled-up days [$3, $4), the counts of RAW_DAY's days: the levels
# cmp_impression_counts writes for a site of one rule and no variants (per surface, every
# surface, and the '*' totals).
ROLLUP = """
INSERT INTO impression_days (site_id, day, rule, variant, surface, impressions, visitors)
SELECT s.site_id, d.day::date, l.rule, l.variant, l.surface, s.n * l.share / 20,
       greatest(s.n * l.share / 20 * 10 / 13, 1)
FROM generate_series($3::date, $4::date - 1, interval '1 day') AS d (day)
CROSS JOIN unnest($1::text[], $2::bigint[]) AS s (site_id, n)
CROSS JOIN (VALUES ($5, '', 'banner', 16), ($5, '', 'settings', 3), ($5, '', 'reprompt', 1),
                   ($5, '', '', 20), ($5, '*', '', 20), ('*', '', '', 20), ('*', '*', '', 20))
    AS l (rule, variant, surface, share)
"""


def part_name(day: date) -> str:
    return f"impressions_{day:%Y%m%d}"


def wanted(per_month: int, info: dict[str, Any]) -> dict[str, Any]:
    """What the marker's record must say for a fill to be reused."""
    return {
        "per_month": per_month,
        "database": info["database"],
        "database_filled_at": info.get("filled_at"),
    }


def is_current(found: dict[str, Any] | None, per_month: int, info: dict[str, Any]) -> bool:
    want = wanted(per_month, info)
    return found is not None and all(found.get(k) == v for k, v in want.items())


async def _site_sizes(conn: asyncpg.Connection, per_day: int) -> tuple[list[str], list[int]]:
    sites = [r["site_id"] for r in await conn.fetch("SELECT site_id FROM sites ORDER BY 1")]
    return sites, gen.site_sizes(per_day, len(sites)) if sites else []


async def _clear(conn: asyncpg.Connection) -> None:
    """No impressions at all: a fill starts from nothing (its earlier one included)."""
    parts = await conn.fetch(
        "SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid"
        " WHERE h.inhparent = 'impressions'::regclass"
    )
    for r in parts:
        await conn.execute(f'DROP TABLE "{r["relname"]}"')
    await conn.execute("TRUNCATE impression_days, impression_rollup")


async def _raw_day(
    conn: asyncpg.Connection, day: date, sites: list[str], sizes: list[int], span: timedelta
) -> None:
    """Day `day`'s partition, filled as a plain table, then attached (which builds its key)."""
    part = part_name(day)
    await conn.execute(
        f"CREATE TABLE {part} (LIKE impressions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )
    await conn.execute(
        RAW_DAY.format(part=part),
        sites,
        sizes,
        day,
        span // timedelta(microseconds=1),
        DEFAULT_RULE.id,
    )
    await conn.execute(
        f"ALTER TABLE impressions ATTACH PARTITION {part}"
        f" FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
    )
    await conn.execute(f"VACUUM (ANALYZE) {part}")


async def fill(dsn: str, per_month: int, info: dict[str, Any], first_day: date) -> dict[str, Any]:
    """Fill database `dsn` with the impressions of `per_month` a month as of `CLOCK` on
    today (UTC): the rollup from `first_day`, the raw days the code keeps."""
    t0 = time.perf_counter()
    day = datetime.now(UTC).date()
    per_day = per_month // DAYS_PER_MONTH
    conn = await asyncpg.connect(dsn, server_settings={"maintenance_work_mem": WORK_MEM})
    try:
        await conn.execute(f"SET work_mem = '{WORK_MEM}'")
        sites, sizes = await _site_sizes(conn, per_day)
        await _clear(conn)
        await conn.execute(ROLLUP, sites, sizes, first_day, day, DEFAULT_RULE.id)
        await conn.execute(
            "INSERT INTO impression_rollup (day)"
            " SELECT generate_series($1::date, $2::date - 1, interval '1 day')::date",
            first_day,
            day,
        )
        await conn.execute("VACUUM (ANALYZE) impression_days, impression_rollup")
        t1 = time.perf_counter()
        raw_days = [day - timedelta(days=back) for back in range(RAW_DAYS, -1, -1)]
        raw_rows = 0
        for d in raw_days:
            span = CLOCK if d == day else timedelta(days=1)
            today_sizes = [n * span // timedelta(days=1) for n in sizes]
            say(f"  impressions: raw day {d} ({sum(today_sizes):,} rows) ...")
            await _raw_day(conn, d, sites, today_sizes, span)
            raw_rows += sum(today_sizes)
        await impressions_store.make_partitions_ahead(conn)  # as maintenance leaves them
        await conn.execute("ANALYZE impressions")
        t2 = time.perf_counter()
        sizes_now = await table_bytes(conn)
    finally:
        await conn.close()
    return {
        **wanted(per_month, info),
        "sites": len(sites),
        "per_day": per_day,
        "big_site_per_day": sizes[0] if sizes else 0,
        "day": day.isoformat(),
        "clock": (datetime.combine(day, datetime.min.time(), UTC) + CLOCK).isoformat(),
        "rollup_from": first_day.isoformat(),
        "raw_days": [d.isoformat() for d in raw_days],
        "raw_rows": raw_rows,
        **sizes_now,
        "seconds": {
            "rollup": round(t1 - t0, 1),
            "raw": round(t2 - t1, 1),
            "total": round(t2 - t0, 1),
        },
        "filled_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


async def table_bytes(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(
        "SELECT (SELECT coalesce(sum(pg_total_relation_size(h.inhrelid)), 0) FROM pg_inherits h"
        "        WHERE h.inhparent = 'impressions'::regclass)::bigint AS raw,"
        " pg_total_relation_size('impression_days') AS rollup,"
        " (SELECT count(*) FROM impression_days) AS rollup_rows"
    )
    return {
        "raw_bytes": row["raw"],
        "rollup_bytes": row["rollup"],
        "rollup_rows": row["rollup_rows"],
    }


def stats_cases(
    site: str, start: datetime, end: datetime, rollup: Any
) -> list[atsize_explain.Case]:
    """The queries of `select_stats` (the stats endpoint's and the stats page's read)
    with the arguments it gives them."""
    st, im = queries("stats"), queries("impressions")
    first, last = stats_store.impression_days(start, end)
    return [
        atsize_explain.Case(
            f"stats of {site}: rolled-up days (stats.select_rollup)", st["select_rollup"], (site,)
        ),
        atsize_explain.Case(
            f"stats of {site}: decisions (stats.select_stats)",
            st["select_stats"],
            stats_store.stats_args(site, start, end, rollup),
        ),
        atsize_explain.Case(
            f"stats of {site}: impressions (impressions.select_impression_days)",
            im["select_impression_days"],
            (site, first, last),
        ),
    ]


async def _timed_reads(
    conn: asyncpg.Connection, site: str, start: datetime, end: datetime
) -> dict[str, Any]:
    ms = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        await stats_store.select_stats(conn, site, start=start, end=end, interval="day")
        ms.append(1000 * (time.perf_counter() - t0))
    return summary(ms[1:])  # the first also prepares the statements


CLEAR_PROVISIONAL: Final = "DELETE FROM impression_provisional"


async def _refresh(conn: asyncpg.Connection, threshold: int) -> dict[str, Any]:
    """One refresh of the provisional counts from none (a server's maintenance would
    otherwise have taken them already), timed."""
    await conn.execute(CLEAR_PROVISIONAL)
    t0 = time.perf_counter()
    counted = await impressions_store.refresh_provisional(conn, threshold=threshold)
    seconds = round(time.perf_counter() - t0, 3)
    rows = int(await conn.fetchval("SELECT count(*) FROM impression_provisional"))
    say(f"atsize: refresh of the provisional counts: {counted} site-days in {seconds} s")
    return {"site_days": counted, "rows": rows, "seconds": seconds}


async def measure(
    dsn: str,
    record: dict[str, Any],
    sites: dict[str, str],
    *,
    threshold: int = impressions_store.PROVISIONAL_THRESHOLD,
) -> tuple[dict[str, Any], str]:
    """Time and EXPLAIN the stats read of each of `sites` (role: site id) as of the
    fill's `CLOCK`."""
    now = datetime.fromisoformat(record["clock"])
    rng = stats_range({}, now)
    texts: list[str] = []
    out: dict[str, Any] = {
        "per_month": record["per_month"],
        "raw_rows": record["raw_rows"],
        "from": rng.start.isoformat(),
        "to": rng.end.isoformat(),
    }
    conn = await connect(dsn)  # with the server's codecs (jsonb)
    try:
        out.update(await table_bytes(conn))
        empty = await atsize_explain.empty_tables(conn)
        for role, site in sites.items():
            found = await conn.fetchrow(queries("stats")["select_rollup"], site)
            rollup = (found["from_day"], found["through_day"]) if found else None
            rows = []
            for case in stats_cases(site, rng.start, rng.end, rollup):
                text, row = await atsize_explain.explain_one(conn, case, empty)
                texts.append(text)
                rows.append(row)
            raw = int(
                await conn.fetchval("SELECT count(*) FROM impressions WHERE site_id = $1", site)
            )
            timed = await _timed_reads(conn, site, rng.start, rng.end)
            out[role] = {"site": site, **timed, "raw_rows": raw, "explain": rows}
            say(
                f"atsize: stats of {site} ({raw:,} raw impressions kept): "
                f"p50 {timed['p50_ms']} ms, p99 {timed['p99_ms']} ms"
            )
        out["refresh"] = await _refresh(conn, threshold)
        for role, site in sites.items():
            timed = await _timed_reads(conn, site, rng.start, rng.end)
            out[role]["provisional"] = timed
            say(
                f"atsize: stats of {site} after the refresh: "
                f"p50 {timed['p50_ms']} ms, p99 {timed['p99_ms']} ms"
            )
    finally:
        await conn.execute(CLEAR_PROVISIONAL)
        await conn.close()
    head = (
        f"## Stats at {record['per_month']:,} impressions a month"
        f" (as of {record['clock']}; the default range {rng.start} … {rng.end}, per day)\n"
    )
    return out, head + "\n" + "\n".join(texts)


def table(result: dict[str, Any]) -> str:
    """The stats reads measured: one row per site, then each query's plan in short."""
    out = [
        f"Stats read at {result['per_month'] / 1e6:g} M impressions a month "
        f"({result['raw_rows']:,} raw rows kept; raw {result['raw_bytes'] / 2**20:,.0f} MB, "
        f"rollup {result['rollup_rows']:,} rows {result['rollup_bytes'] / 2**20:,.0f} MB):",
        "",
        "| site | raw impressions kept | select_stats p50 ms | p99 ms"
        " | after the refresh p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    plans = []
    for role in ROLES:
        r = result.get(role)
        if r:
            after = r.get("provisional", {})
            out.append(
                f"| {r['site']} ({role}) | {r['raw_rows']:,} | {r['p50_ms']} | {r['p99_ms']}"
                f" | {after.get('p50_ms', '–')} | {after.get('p99_ms', '–')} |"
            )
            plans.extend(r["explain"])
    refresh = result.get("refresh")
    if refresh:
        out += [
            "",
            f"One refresh of the provisional counts: {refresh['site_days']} site-days"
            f" ({refresh['rows']} rows) in {refresh['seconds']} s.",
        ]
    return "\n".join(out) + "\n\n" + atsize_explain.table(plans, raw_days=True)
