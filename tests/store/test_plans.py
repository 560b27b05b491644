"""The plans of the request-path queries on a partitioned log with realistic statistics
(issue 12, item 4, at small size): index scans, only the months a range needs.

The data: 20 sites over three months, one site holding a quarter of the events, the
tables ANALYZEd; the planner is left at its defaults (no enable_seqscan tricks), except
`enable_sort = off` where the export itself sets it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from cmp.audit.signing import Signer
from cmp.maintenance import purge
from cmp.store.db import connect
from cmp.store.events import Submission
from cmp.store.impressions import (
    NEW_IMPRESSION_COLUMNS,
    NewImpression,
    select_impression_days,
    write_impressions,
)
from cmp.store.impressions import roll_up as roll_up_impressions
from cmp.store.migrate import migrate
from cmp.store.sqlfiles import queries
from cmp.store.stats import roll_up, stats_args
from tests.store.chainrows import append, insert_site, new_event
from tests.store.test_partitions import fill_two_sites, month_start, partition_name

BIG = "big-site"
SMALL = "site-07"
EVENTS = 24_000
OURS = ("consent_events", "consent_state", "consent_event_ids")


@pytest.fixture(scope="module")
async def planned(fresh_database: Any) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(await fresh_database())
    await migrate(conn)
    sites = [BIG] + [f"site-{i:02d}" for i in range(19)]
    for site_id in sites:
        await insert_site(conn, site_id)
    # The three whole months before this one: the plans do not depend on the day.
    now = datetime.now(UTC)
    start = month_start(now, -3)
    span = (month_start(now) - start).total_seconds()
    batch = []
    for n in range(EVENTS):
        # A quarter to the big site; subjects come back now and then (a history).
        site_id = BIG if n % 4 == 0 else sites[1 + n % 19]
        at = start + timedelta(seconds=span * n / EVENTS)
        batch.append(new_event(site_id, at, f"subj-{n % (EVENTS // 3)}"))
        if len(batch) == 1000:
            await append(conn, batch)
            batch = []
    await conn.execute("ANALYZE")
    yield conn
    await conn.close()


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def explain(conn: asyncpg.Connection, query: str, *args: Any) -> list[dict[str, Any]]:
    text = await conn.fetchval("EXPLAIN (FORMAT JSON) " + query.rstrip().rstrip(";"), *args)
    return list(nodes(json.loads(text)[0]["Plan"]))


def scans(plan: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Relation scanned → the kinds of scan used on it."""
    found: dict[str, set[str]] = {}
    for node in plan:
        if "Relation Name" in node:
            found.setdefault(node["Relation Name"], set()).add(node["Node Type"])
    return found


async def assert_no_seq_scan(
    conn: asyncpg.Connection, plan: list[dict[str, Any]]
) -> dict[str, set[str]]:
    """No sequential scan of any of our tables bigger than one page (the months ahead
    are empty, and a new month starts small: reading one page costs the same whichever
    way)."""
    found = scans(plan)
    ours = {rel: kinds for rel, kinds in found.items() if rel.startswith(OURS)}
    assert ours, found
    empty = {
        r["relname"]
        for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relname = any($1)"
            " AND pg_relation_size(oid) <= current_setting('block_size')::int",
            list(ours),
        )
    }
    assert all("Seq Scan" not in kinds for rel, kinds in ours.items() if rel not in empty), ours
    return {rel: kinds for rel, kinds in ours.items() if rel not in empty}


async def log_plans(conn: asyncpg.Connection) -> list[str]:
    """From now on, the plan of every statement the session runs, nested ones (inside
    functions) included, is appended to the list returned."""
    plans: list[str] = []
    conn.add_log_listener(lambda _conn, message: plans.append(str(message)))
    for setting in (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_nested_statements = on",
        "SET client_min_messages = log",
    ):
        await conn.execute(setting)
    return plans


def digest(site_id: str, subject: str) -> str:
    return hashlib.sha256(f"{site_id}/{subject}".encode()).hexdigest()


async def test_batched_state_lookup_uses_the_state_key(planned: asyncpg.Connection) -> None:
    subjects = [f"subj-{n}" for n in range(0, 2000, 20)]
    plan = await explain(
        planned, queries("events")["select_states"], [SMALL] * len(subjects), subjects
    )
    assert await assert_no_seq_scan(planned, plan) == {"consent_state": {"Index Scan"}}


async def test_a_subjects_history_and_its_erasure_use_the_subject_index(
    planned: asyncpg.Connection,
) -> None:
    subject = digest(BIG, "subj-40")
    history = await explain(
        planned, queries("audit")["export_lines"], BIG, None, None, None, subject
    )
    found = await assert_no_seq_scan(planned, history)
    holding = await planned.fetch(
        "SELECT DISTINCT tableoid::regclass::text AS name FROM consent_events WHERE site_id = $1",
        BIG,
    )
    assert set(found) == {r["name"] for r in holding}  # a history spans the whole log
    erasures = await explain(planned, queries("audit")["select_erasures"], BIG, subject)
    await assert_no_seq_scan(planned, erasures)
    # The erasure itself runs inside a function: its plan is read through auto_explain,
    # in a transaction rolled back.
    plans: list[str] = []

    def keep(_conn: object, message: object) -> None:
        plans.append(str(message))

    planned.add_log_listener(keep)
    try:
        with contextlib.suppress(RolledBack):
            async with planned.transaction():
                for setting in (
                    "LOAD 'auto_explain'",
                    "SET LOCAL auto_explain.log_min_duration = 0",
                    "SET LOCAL auto_explain.log_nested_statements = on",
                    "SET LOCAL client_min_messages = log",
                ):
                    await planned.execute(setting)
                erased = await planned.fetchval(
                    queries("audit")["erase_subject_rows"], BIG, subject
                )
                assert erased > 0
                raise RolledBack
    finally:
        planned.remove_log_listener(keep)
    updates = "\n".join(p for p in plans if "Update on consent_events" in p)
    assert updates, plans
    # Empty months (those ahead) may be scanned; every month holding records is probed.
    for month in {r["name"] for r in holding}:
        assert f"Seq Scan on {month} " not in updates, updates
        assert f"Index Scan using {month}_site_id_subject_digest_seq_idx" in updates, updates


class RolledBack(Exception):
    """Leaves a transaction that only looked."""


async def test_an_export_of_last_month_reads_only_that_month_in_seq_order(
    planned: asyncpg.Connection,
) -> None:
    now = datetime.now(UTC)
    since, until = month_start(now, -1), month_start(now)
    async with planned.transaction():
        await planned.execute("SET LOCAL enable_sort = off")  # as the export does
        plan = await explain(
            planned, queries("audit")["export_lines"], BIG, since, until, None, None
        )
    assert all(node["Node Type"] != "Sort" for node in plan)
    assert set(await assert_no_seq_scan(planned, plan)) == {partition_name(since)}


async def test_a_csv_window_of_last_month_reads_only_that_month_by_index(
    planned: asyncpg.Connection,
) -> None:
    now = datetime.now(UTC)
    since, until = month_start(now, -1), month_start(now)
    audit = queries("audit")
    async with planned.transaction():
        await planned.execute("SET LOCAL enable_sort = off")  # as the export does
        end = await explain(
            planned, audit["export_csv_window_end"], BIG, since, until, None, None, 0, 2000
        )
        window = await explain(
            planned, audit["export_csv"], BIG, since, until, None, None, 0, 10**6
        )
    for plan in (end, window):
        assert all(node["Node Type"] != "Sort" for node in plan)
        assert set(await assert_no_seq_scan(planned, plan)) == {partition_name(since)}


async def test_stats_by_day_read_only_the_range_by_index(planned: asyncpg.Connection) -> None:
    # Nothing rolled up: the whole range is counted from the records.
    now = datetime.now(UTC)
    since = month_start(now, -1)
    args = stats_args(SMALL, since, month_start(now), None)
    plan = await explain(planned, queries("stats")["select_stats"], *args)
    assert set(await assert_no_seq_scan(planned, plan)) == {partition_name(since)}


async def test_stats_of_rolled_up_days_read_the_rollup_and_only_the_edges_by_index(
    planned: asyncpg.Connection,
) -> None:
    # The big site's month is a quarter of its partition: counted from the records, the
    # planner read the whole month (loadtest/README.md, at size). Rolled up, the stats
    # read its days from stats_days and only the partial first day from the records.
    await roll_up(planned)
    await planned.execute("ANALYZE stats_days")
    now = datetime.now(UTC)
    # Last month but its last day, which is not closed in the first hour of this month.
    since, until = month_start(now, -1), month_start(now) - timedelta(days=1)
    rollup = await planned.fetchrow(queries("stats")["select_rollup"], BIG)
    assert rollup is not None and rollup["from_day"] <= since.date()
    assert rollup["through_day"] >= until.date()
    whole = stats_args(BIG, since, until, tuple(rollup))
    plan = await explain(planned, queries("stats")["select_stats"], *whole)
    found = scans(plan)
    assert "stats_days" in found
    assert not [rel for rel in found if rel.startswith("consent_events")], found
    edge = stats_args(BIG, since + timedelta(hours=7), until, tuple(rollup))
    plan = await explain(planned, queries("stats")["select_stats"], *edge)
    assert "stats_days" in scans(plan)
    assert set(await assert_no_seq_scan(planned, plan)) == {partition_name(since)}


async def test_the_retry_check_of_the_append_uses_the_id_key(planned: asyncpg.Connection) -> None:
    # The statement cmp_append runs to find retries (it lives inside the function).
    # A flush's ids against the table, in the proportion of a 100-event flush on a log
    # of a quarter million events (the bigger the log, the surer the index).
    ids = [
        r["event_id"]
        for r in await planned.fetch(
            "SELECT event_id FROM consent_event_ids WHERE site_id = $1 LIMIT 10", SMALL
        )
    ]
    plan = await explain(
        planned,
        "SELECT k.i, e.body_digest FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY"
        " AS k (site_id, event_id, i) JOIN consent_event_ids e"
        " ON e.site_id = k.site_id AND e.event_id = k.event_id",
        [SMALL] * len(ids),
        ids,
    )
    assert await assert_no_seq_scan(planned, plan) == {"consent_event_ids": {"Index Scan"}}


async def test_the_purge_cut_is_found_by_index(planned: asyncpg.Connection) -> None:
    plan = await explain(planned, queries("audit")["select_purge_cut"])
    await assert_no_seq_scan(planned, plan)


async def test_the_purge_cut_reads_by_index_even_where_a_hash_join_looks_cheaper(
    planned: asyncpg.Connection,
) -> None:
    # On a large log the planner found the cut's hash by joining the sites past their
    # retention with a scan of the whole log (loadtest/README.md, at size). Here the log
    # is small, so the planner is pushed there by hand: a plan that can only read the log
    # by index stays the same.
    async with planned.transaction():
        await planned.execute("SET LOCAL enable_nestloop = off")
        plan = await explain(planned, queries("audit")["select_purge_cut"])
    await assert_no_seq_scan(planned, plan)
    assert all(node["Node Type"] != "Hash Join" for node in plan)


async def test_the_append_probes_the_id_key_after_the_table_grew_under_its_session(
    fresh_database: Any,
) -> None:
    # The group commit's session lives as long as the server, and PL/pgSQL keeps its
    # statements' plans for the session: a plan made while the ids table was small must
    # not become a scan of the whole table once it has grown (no ANALYZE in between).
    dsn = await fresh_database()
    conn, filler = await connect(dsn), await connect(dsn)
    try:
        await migrate(conn)
        await insert_site(conn, SMALL)
        now = datetime.now(UTC)
        for _ in range(8):  # past the plan cache's custom plans: the generic one stays
            await append(conn, [new_event(SMALL, now) for _ in range(10)])
        await filler.copy_records_to_table(
            "consent_event_ids",
            records=[("other-site", uuid.uuid4(), b"d") for _ in range(30_000)],
            columns=["site_id", "event_id", "body_digest"],
        )
        plans = await log_plans(conn)
        await append(conn, [new_event(SMALL, now) for _ in range(10)])
    finally:
        await conn.close()
        await filler.close()
    checks = [p for p in plans if "consent_event_ids" in p and "body_digest" in p]
    assert checks, plans
    assert all("Seq Scan on consent_event_ids" not in p for p in checks), checks
    assert any("consent_event_ids_pkey on consent_event_ids" in p for p in checks), checks


async def test_the_impression_count_probes_the_key_after_the_day_grew_under_its_session(
    fresh_database: Any,
) -> None:
    # The same for impressions, where it happens every day: the day's partition starts
    # empty at midnight, and a plan made then joined a scan of the whole day to every
    # batch (a hash anti join) until autovacuum's analyze: each flush cost more than the
    # last.
    dsn = await fresh_database()
    conn, filler = await connect(dsn), await connect(dsn)
    now = datetime.now(UTC)

    def showings(site_id: str, n: int) -> list[NewImpression]:
        return [
            NewImpression(site_id, str(uuid.uuid4()), b"v" * 8, 1, "banner", "", now, "eea")
            for _ in range(n)
        ]

    try:
        await migrate(conn)
        await insert_site(conn, SMALL)
        for _ in range(8):  # past the plan cache's custom plans: the generic one stays
            await write_impressions(conn, [Submission(showings(SMALL, 10))])
        filled = [
            (i.received_at.date(), *(getattr(i, c) for c in NEW_IMPRESSION_COLUMNS))
            for i in showings("other-site", 30_000)
        ]
        await filler.copy_records_to_table(
            "impressions", records=filled, columns=["day", *NEW_IMPRESSION_COLUMNS]
        )
        plans = await log_plans(conn)
        batch = Submission(showings(SMALL, 10))
        await write_impressions(conn, [batch])
    finally:
        await conn.close()
        await filler.close()
    assert batch.outcomes == ["new"] * 10
    today = f"impressions_{now:%Y%m%d}"
    counts = [p for p in plans if "Insert on impressions" in p]
    assert counts, plans
    assert all(f"Seq Scan on {today}" not in p for p in counts), counts
    assert all(f"{today}_pkey on {today}" in p for p in counts), counts


async def test_a_purge_reaches_ids_and_states_through_the_records_it_removes(
    fresh_database: Any,
) -> None:
    # The ids and the states of the whole log outnumber what a purge removes; it must
    # probe their keys from the purged records, not read them whole (at size: a hash
    # join over all ids, a scan of all of a site's states). Both paths: rows deleted
    # inside a month still partly kept, then whole months dropped.
    conn = await connect(await fresh_database())
    try:
        await migrate(conn)
        await fill_two_sites(conn)
        await conn.copy_records_to_table(
            "consent_event_ids",
            records=[("other-site", uuid.uuid4(), b"d") for _ in range(30_000)],
            columns=["site_id", "event_id", "body_digest"],
        )
        await conn.execute(
            "INSERT INTO consent_state (site_id, subject_id, seq, event_id, policy_version,"
            " action, purposes, services, gpc, recorded_at)"
            " SELECT 'sa', 'other-' || n, 10000 + n, gen_random_uuid(), 1, 'accept_all',"
            " '{}', '{}', false, now() FROM generate_series(1, 30000) AS n"
        )
        await conn.execute("ANALYZE")
        plans = await log_plans(conn)
        rows_deleted = {p.site_id: p.deleted for p in await purge(conn, Signer.generate())}
        await conn.execute("UPDATE sites SET retention_days = 300 WHERE site_id = 'sb'")
        months_dropped = {p.site_id: p.deleted for p in await purge(conn, Signer.generate())}
    finally:
        await conn.close()
    assert (rows_deleted, months_dropped) == ({"sa": 5}, {"sb": 2})
    deletes = [
        p for p in plans if "Delete on consent_state" in p or "Delete on consent_event_ids" in p
    ]
    # Rows: one statement (ids and states) per purge; months: states, then ids, each.
    assert len(deletes) == 1 + 1 + 2 * 2, deletes
    for table in ("consent_state", "consent_event_ids"):
        ours = [p for p in deletes if f"Delete on {table}" in p]
        assert all(f"Seq Scan on {table}" not in p for p in ours), ours
        assert all(f"{table}_pkey on {table}" in p for p in ours), ours


async def test_stats_read_no_raw_impressions_of_days_rolled_up(fresh: asyncpg.Connection) -> None:
    # The raw days stay a while after their rollup (cmp.store.impressions.RAW_DAYS); the
    # stats read those days from impression_days only. At size the big site holds a
    # quarter of each raw day (loadtest/README.md), read and thrown away before.
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=back) for back in (2, 1, 0)]
    for site_id in (BIG, SMALL):
        await insert_site(fresh, site_id)
        for day in days:
            at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=1)
            shown = [
                NewImpression(
                    site_id, str(uuid.uuid4()), n.to_bytes(8), 1, "banner", "", at, "default"
                )
                for n in range(300)
            ]
            await write_impressions(fresh, [Submission(shown)])
    late = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=23)
    assert await roll_up_impressions(fresh, now=late) == days[:2]
    await fresh.execute("ANALYZE")
    first, end = today - timedelta(days=29), today + timedelta(days=1)
    sql = queries("impressions")["select_impression_days"].rstrip().rstrip(";")
    text = await fresh.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, BIG, first, end)
    read = {
        node["Relation Name"]
        for node in nodes(json.loads(text)[0]["Plan"])
        if node.get("Relation Name", "").startswith("impressions_") and node["Actual Loops"]
    }
    assert read == {f"impressions_{today:%Y%m%d}"}
    # The same answer: the rolled-up days from the rollup, today from its raw rows.
    got = await select_impression_days(fresh, BIG, first, end)
    assert {(d.day, d.impressions) for d in got if d.rule == d.variant == "*"} == {
        (day, 300) for day in days
    }
