"""The at-size tool (`make bench-atsize`) at small size: 20,000 events over 24 months and
50 sites, filled by the same code as the 20 M run, checked the way the run checks it,
then measured without wrk (the HTTP, export, EXPLAIN and purge parts)."""

from __future__ import annotations

import random
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cmp.audit.record import PERSONAL, RECORD_VERSION
from loadtest import atsize_fill, atsize_impressions, atsize_measure, servers
from loadtest import atsize_gen as gen
from loadtest.atsize import bring_up_to_date, check_sample
from loadtest.atsize_explain import cases

EVENTS, SITES, MONTHS = 20_000, 50, 24


@pytest.fixture(scope="module")
async def filled(
    server_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[dict[str, Any], Path]]:
    data_dir = tmp_path_factory.mktemp("atsize")
    name = f"cmp_test_atsize_{secrets.token_hex(4)}"
    now = datetime.now(UTC)
    with servers.Processes(data_dir / "logs") as procs:
        info = await atsize_fill.fill(
            server_dsn,
            name,
            total=EVENTS,
            sites=SITES,
            start=gen.month_start(now, MONTHS),
            end=gen.month_start(now),
            seed_value=3,
            procs=procs,
            data_dir=data_dir,
        )
    # As a run does to the filled databases before it measures: up to date, rolled up.
    _, days = await bring_up_to_date(servers.with_database(server_dsn, name))
    assert days > 0
    yield info, data_dir
    conn = await asyncpg.connect(server_dsn)
    try:
        for db in (name, f"{name}_run"):
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await conn.close()


def test_sizes_are_skewed_and_exact() -> None:
    sizes = gen.site_sizes(20_000_000, 1000)
    assert sum(sizes) == 20_000_000 and sizes[0] == 5_000_000
    assert sizes[1] > sizes[10] > sizes[-1] > 0
    assert sum(gen.subjects_for(n) for n in sizes) >= 5_000_000


def test_the_heavy_subjects_have_ten_records_and_the_others_three_or_four() -> None:
    n = 5_000
    k = gen.subjects_for(n)
    counts = Counter(gen.owners(n, k, gen.HEAVY_SUBJECTS, random.Random(1)))
    heavy = range(k - gen.HEAVY_SUBJECTS, k)
    assert sorted(counts) == list(range(k))
    assert {counts[s] for s in heavy} == {gen.HEAVY_RECORDS}
    assert {c for s, c in counts.items() if s not in heavy} == {3, 4}
    with pytest.raises(ValueError):
        gen.owners(100, 29, 20, random.Random(1))


def test_erasure_takes_the_heavy_subjects_or_the_top_of_an_older_fill() -> None:
    new = {"subjects": 1428, "heavy_subjects": gen.HEAVY_SUBJECTS}
    old = {"subjects": 1428}  # filled before the heavy subjects: 3 or 4 records each
    top = [f"s-{1427 - i}" for i in range(gen.HEAVY_SUBJECTS)]
    assert atsize_measure.erasure_subjects(new) == top == atsize_measure.erasure_subjects(old)


async def test_the_fill_holds_what_it_says(server_dsn: str, filled: Any) -> None:
    info, _ = filled
    conn = await asyncpg.connect(servers.with_database(server_dsn, info["database"]))
    try:
        per_month = await conn.fetch(
            "SELECT tableoid::regclass::text AS part, count(*) AS n FROM consent_events"
            " GROUP BY 1 ORDER BY 1"
        )
        big = await conn.fetchval(
            "SELECT count(*) FROM consent_events WHERE site_id = $1", info["big_site"]["site_id"]
        )
        ids = await conn.fetchval("SELECT count(*) FROM consent_event_ids")
        heads = await conn.fetchval("SELECT sum(seq) FROM log_heads")
        trees = await conn.fetchval("SELECT sum(size) FROM log_trees")
        states = await conn.fetchval("SELECT count(*) FROM consent_state")
        newest = await conn.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT ON (site_id, subject_id) site_id,"
            " subject_id, seq, event_id, received_at FROM consent_events"
            " ORDER BY site_id, subject_id, seq DESC) n JOIN consent_state s"
            " USING (site_id, subject_id) WHERE s.seq = n.seq AND s.event_id = n.event_id"
            " AND s.recorded_at = n.received_at"
        )
        attached = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'consent_events'::regclass"
        )
        indexed = await conn.fetch(
            "SELECT c.relname, count(*) AS n FROM pg_inherits i JOIN pg_class c"
            " ON c.oid = i.inhrelid JOIN pg_index x ON x.indrelid = c.oid"
            " WHERE i.inhparent = 'consent_events'::regclass GROUP BY 1"
        )
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'consent_events'"
        )
        versions = await conn.fetch("SELECT v, count(*) AS n FROM consent_events GROUP BY v")
        # Every personal value in its column, with its salt and the commitment to it
        # (a consent record names no user: only link records do).
        disclosed = await conn.fetchval(
            "SELECT count(*) FROM consent_events WHERE "
            + " AND ".join(
                f"{f} IS NOT NULL AND octet_length({f}_salt) = 16"
                f" AND {f}_sha256 = sha256({f}_salt || convert_to({f}, 'UTF8'))"
                for f in (p.name for p in PERSONAL if p.name != "user_digest")
            )
            + " AND user_digest IS NULL AND user_digest_sha256 IS NULL"
        )
        heavy = await conn.fetch(
            "SELECT subject_id, count(*) AS n FROM consent_events WHERE site_id = $1"
            " GROUP BY 1 HAVING count(*) > 4",
            info["big_site"]["site_id"],
        )
    finally:
        await conn.close()
    assert [r["part"] for r in per_month] == [f"consent_events_{m}" for m in info["months"]]
    assert len(per_month) == MONTHS and all(r["n"] > 0 for r in per_month)
    assert sum(r["n"] for r in per_month) == EVENTS == ids == heads == trees
    assert big == EVENTS // 4
    assert states == info["subjects"] == newest  # every state is its subject's newest record
    assert attached >= MONTHS + 1  # the filled months, and the current one made ahead
    # key, subject, time, erasure and user index in every month
    assert {r["n"] for r in indexed} == {5}
    # What cmp writes now: every column of the log, records of the current version.
    assert {r["column_name"] for r in columns} == set(gen.EVENT_COLUMNS)
    assert (
        {r["v"]: r["n"] for r in versions}
        == {RECORD_VERSION: EVENTS}
        == {RECORD_VERSION: disclosed}
    )
    subjects = info["big_site"]["subjects"]
    assert info["record_version"] == RECORD_VERSION
    top = [f"s-{subjects - 1 - i}" for i in range(gen.HEAVY_SUBJECTS)]
    assert sorted(r["subject_id"] for r in heavy) == sorted(top)
    assert {r["n"] for r in heavy} == {gen.HEAVY_RECORDS} and len(heavy) < subjects


async def test_a_sample_site_verifies_and_its_tree_is_the_servers(
    server_dsn: str, filled: Any
) -> None:
    info, data_dir = filled
    check = await check_sample(servers.with_database(server_dsn, info["database"]), info, data_dir)
    assert check["export_exit"] == 0 and check["records"] > 0
    assert check["record_versions"] == {str(RECORD_VERSION): check["records"]}
    assert check["verify_exit"] == 0, check["verify_says"]
    assert check["tree_root_matches"]


async def test_a_measured_run_leaves_the_filled_database_as_it_was(
    server_dsn: str, filled: Any
) -> None:
    info, data_dir = filled
    with servers.Processes(data_dir / "logs") as procs:
        result, explain = await atsize_measure.measure_point(
            server_dsn, info, procs, None, data_dir, duration=1, rounds=1, explain=True
        )
    dsn = servers.with_database(server_dsn, info["database"])
    big = info["big_site"]["site_id"]
    conn = await asyncpg.connect(dsn)
    try:
        newest = info["months"][-1]
        in_month = await conn.fetchval(
            f"SELECT count(*) FROM consent_events_{newest} WHERE site_id = $1", big
        )
        total = await conn.fetchval("SELECT count(*) FROM consent_events")
        oldest = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f"consent_events_{info['months'][0]}"
        )
    finally:
        await conn.close()
    assert result["sizes"]["events"] == EVENTS
    assert result["sizes"]["log_bytes_per_event"] > 100
    assert result["history"]["n"] == 100
    erasure = result["erasure"]
    assert erasure["n"] == gen.HEAVY_SUBJECTS == 20
    assert erasure["records_each"] == [gen.HEAVY_RECORDS] * 20  # each answered 200
    assert 0 < erasure["wal_bytes_p50"] <= erasure["wal_bytes_p99"] <= erasure["wal_bytes_max"]
    assert erasure["wal_bytes_per_record"] > 0 and erasure["tree_busy"] == 0
    assert result["export_month"]["records"] == in_month > 0
    # The big site's whole export: its records, and the 20 `erased` records appended.
    assert result["export_site"]["records"] == EVENTS // 4 + 20
    purge = result["purge"]
    assert purge["month_dropped"] and purge["records_purged"] >= purge["oldest_month_rows"] > 0
    assert purge["wal_bytes"] > 0
    beside = purge["ingest_beside"]
    assert beside["ok"] == beside["sent"] > 0 and beside["non_2xx"] == 0
    assert [r["query"] for r in result["explain"]] == [c.name for c in cases(_any_target())]
    # The newest month is rolled up: its stats read stats_days and none of the log.
    (stats,) = [r for r in result["explain"] if r["query"].startswith("stats by day")]
    assert stats["months_read"] == 0 and not stats["seq_scans"], stats
    assert explain.count("Execution Time") == len(result["explain"])
    # The copy went; the filled database is untouched.
    assert total == EVENTS and oldest


def _any_target() -> Any:
    from loadtest.atsize_explain import Target

    now = datetime.now(UTC)
    return Target("s", ["x"], "0" * 64, "0", "0" * 64, 1, now, now, [0], [0])


async def test_the_impressions_part_fills_the_retained_days_and_reads_one_raw_day(
    server_dsn: str, filled: Any
) -> None:
    # Last in the module: it adds the impressions to the filled database.
    info, _ = filled
    dsn = servers.with_database(server_dsn, info["database"])
    per_month = 300_000
    first = datetime.fromisoformat(info["start"]).date()
    record = await atsize_impressions.fill(dsn, per_month, info, first)
    assert atsize_impressions.is_current(record, per_month, info)
    assert not atsize_impressions.is_current(record, per_month * 2, info)
    conn = await asyncpg.connect(dsn)
    try:
        raw = await conn.fetch("SELECT day, count(*) AS n FROM impressions GROUP BY 1 ORDER BY 1")
        rolled = await conn.fetchval("SELECT count(DISTINCT day) FROM impression_days")
        sites = await conn.fetchval("SELECT count(*) FROM sites")
    finally:
        await conn.close()
    per_day = per_month // atsize_impressions.DAYS_PER_MONTH
    today = datetime.now(UTC).date()
    # The days cmp keeps raw at 23:00: the two closed ones whole, today 23 hours of it.
    assert [r["day"] for r in raw] == [today - timedelta(days=b) for b in (2, 1, 0)]
    assert abs(raw[0]["n"] - per_day) < SITES and abs(raw[-1]["n"] - per_day * 23 // 24) < SITES
    assert sum(r["n"] for r in raw) == record["raw_rows"]
    assert rolled == (today - first).days
    assert record["rollup_rows"] == rolled * sites * 7  # the levels of one rule, no variants
    sites_measured = {"big": info["big_site"]["site_id"], "mid": atsize_fill.site_id(10)}
    # A threshold the big site's open day passes (a test-sized fill has no site over
    # the real one): the refresh is timed and the reads after it.
    result, text = await atsize_impressions.measure(
        dsn, record, sites_measured, threshold=per_day // 8
    )
    big = result["big"]
    assert big["n"] == atsize_impressions.REPEATS - 1 and big["p50_ms"] > 0
    assert result["refresh"]["site_days"] >= 1 and result["refresh"]["seconds"] > 0
    assert big["provisional"]["n"] == atsize_impressions.REPEATS - 1
    conn = await asyncpg.connect(dsn)
    try:  # the measurement leaves the filled database as it found it
        assert await conn.fetchval("SELECT count(*) FROM impression_provisional") == 0
    finally:
        await conn.close()
    assert big["raw_rows"] > result["mid"]["raw_rows"] > 0
    (shown,) = [r for r in big["explain"] if "select_impression_days" in r["query"]]
    assert shown["raw_days_read"] == 1 and not shown["seq_scans"], shown
    assert text.count("Execution Time") == 6
    assert "select_stats p50 ms" in atsize_impressions.table(result)
    assert "One refresh of the provisional counts" in atsize_impressions.table(result)
