"""The stats' per-day rollup (issue 12, item 4; per rule and variant with the impression
funnel, issues 21 and 22): `select_stats` answers the same whatever part of the log (and
of the impressions) is rolled up, the job rolls up closed days only and once, concurrent
runs count each day once, and `forget_before` hands the purged days back to the records.

The expected answers are counted here in Python from the stored rows, independently of
the SQL that counts them for the server."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import asyncpg

from cmp.audit.signing import Signer
from cmp.maintenance import purge
from cmp.store import impressions as impressions_store
from cmp.store import stats as stats_store
from cmp.store.db import connect
from cmp.store.events import Submission
from cmp.store.impressions import NewImpression, write_impressions
from cmp.store.stats import (
    ACTIONS,
    ANSWERS,
    CHUNK_DAYS,
    CLOSE_MARGIN,
    INTERVALS,
    Counts,
    Interval,
    Tally,
    bucket_start,
    first_open_day,
)
from tests.store.chainrows import append, insert_site, new_event
from tests.store.maintenance_loop import eventually, maintenance_running

SITE = "rollup-site"
DAYS_BACK = 70
PURPOSES = ("necessary", "statistics", "marketing", "social")
ALL_ACTIONS = (*ACTIONS, "erased")


def midnight(at: datetime, days_back: int = 0) -> datetime:
    return datetime.combine(at.astimezone(UTC).date(), datetime.min.time(), UTC) - timedelta(
        days=days_back
    )


ONE_DAY = timedelta(days=1)
RULES = ("eea", "us-ca", "")  # '' = a record without a rule (as version 1's)
VARIANTS = ("a", "b", "")


def spread_events(
    site_id: str, now: datetime, seed: int, count: int
) -> tuple[list[Any], list[NewImpression]]:
    """Records over the last DAYS_BACK days, at any time of day, a few in the last hour;
    every action (`erased` too, which is never counted), varying purpose sets, rules and
    variants, some API-imported (no Origin) or under GPC; most answer a showing, stored
    with the impressions, shown up to two days before (the oldest are not timed)."""
    rng = random.Random(seed)
    events, shown = [], []
    for n in range(count):
        if n % 25 == 0:
            at = now - timedelta(seconds=rng.uniform(1, 3000))  # the last hour
        else:
            at = now - timedelta(seconds=rng.uniform(3600, DAYS_BACK * 86400))
        action = rng.choice(ALL_ACTIONS)
        offered = rng.sample(PURPOSES, rng.randint(0, len(PURPOSES)))
        purposes = {key: rng.random() < 0.5 for key in offered}
        rule, variant = rng.choice(RULES), rng.choice(VARIANTS)
        fields: dict[str, Any] = {"rule": rule or None, "variant": variant or None}
        fields["origin"] = None if rng.random() < 0.1 else "https://shop.example"
        fields["gpc"] = rng.random() < 0.15
        if rng.random() < 0.7:
            impression = str(uuid.uuid4())
            fields["impression_id"] = impression
            shown_at = at - timedelta(seconds=rng.choice((0.4, 7, 95, 4000, 90000, 190000)))
            shown.append(
                NewImpression(
                    site_id,
                    impression,
                    bytes([rng.randrange(30)]) * 8,  # 30 visitors, some seen twice a day
                    1,
                    rng.choice(("banner", "settings")),
                    variant,
                    shown_at,
                    rule,
                )
            )
        events.append(new_event(site_id, at, action=action, purposes=purposes, **fields))
    return events, shown


def timed_decisions(
    site_id: str, spread: tuple[list[Any], list[NewImpression]], ats: list[datetime]
) -> tuple[list[Any], list[NewImpression]]:
    """`spread` and, at each of `ats`, a decision answering a showing 7 s before it: a
    timed decision there whatever the time of day the random spread was drawn at."""
    events, shown = spread
    for at in ats:
        impression = str(uuid.uuid4())
        shown.append(
            NewImpression(
                site_id, impression, b"t" * 8, 1, "banner", "", at - timedelta(seconds=7), ""
            )
        )
        events.append(
            new_event(
                site_id,
                at,
                action="accept_all",
                purposes={},
                impression_id=impression,
                rule=None,
                variant=None,
            )
        )
    return events, shown


async def store(conn: asyncpg.Connection, spread: tuple[list[Any], list[NewImpression]]) -> None:
    events, shown = spread if isinstance(spread, tuple) else (spread, [])
    for i in range(0, len(events), 100):
        await append(conn, events[i : i + 100])
    for i in range(0, len(shown), 100):
        await write_impressions(conn, [Submission(shown[i : i + 100])])


def bin_of(seconds: float) -> int:
    """cmp_latency_bin, independently."""
    seconds = max(seconds, 0)
    if seconds < 60:
        return int(seconds)
    if seconds < 3600:
        return int(seconds // 10 * 10)
    return int(seconds // 300 * 300)


def count_one(row: asyncpg.Record, shown_at: dict[Any, tuple[date, datetime]]) -> Counts:
    """One record's counts, by the rules docs/api.md states."""
    action, pm = row["action"], row["purposes"] or {}
    api = row["origin"] is None
    auto = not api and bool(row["gpc"]) and row["impression_id"] is None
    counted = not (api or auto)
    inter = counted and row["impression_id"] is not None and action != "withdraw"
    latency = {}
    if inter and row["impression_id"] in shown_at:
        day, at = shown_at[row["impression_id"]]
        if day in (row["received_at"].date(), row["received_at"].date() - timedelta(days=1)):
            latency = {bin_of((row["received_at"] - at).total_seconds()): 1}
    return Counts(
        events=1,
        actions={a: int(a == action) for a in ACTIONS},
        purposes={k: (int(v is True), 1) for k, v in pm.items()},
        decisions=int(counted),
        decided={k: (int(v is True), 1) for k, v in pm.items()} if counted else {},
        interactions=int(inter),
        answered={a: int(inter and a == action) for a in ANSWERS},
        granted={k: 1 for k, v in pm.items() if inter and v is True},
        api_imported=int(api),
        gpc_automatic=int(auto),
        latency=latency,
    )


Times = dict[Any, tuple[date, datetime]]  # impression id -> (day, received_at)


async def recount(
    conn: asyncpg.Connection,
    site_id: str,
    start: datetime,
    end: datetime,
    interval: Interval,
    dropped: Times | None = None,
) -> tuple[list[Tally], Tally]:
    """What `select_stats` must answer, counted in Python from the rows. `dropped`: the
    showings' times before their raw days were dropped, which the rolled-up days were
    counted with."""
    rows = await conn.fetch(
        "SELECT received_at, action, purposes, rule, variant, origin, gpc, impression_id"
        " FROM consent_events"
        " WHERE site_id = $1 AND received_at >= $2 AND received_at < $3",
        site_id,
        start,
        end,
    )
    raw = await conn.fetch(
        "SELECT impression_id, day, received_at, rule, variant, surface, visitor"
        " FROM impressions WHERE site_id = $1",
        site_id,
    )
    shown_at = {r["impression_id"]: (r["day"], r["received_at"]) for r in raw}
    # Days whose raw rows are gone count from impression_days (held to the raw count
    # before the drop by the caller); the days still raw are counted here.
    rolled = await conn.fetch(
        "SELECT d.* FROM impression_days d JOIN impression_rollup r USING (day)"
        " WHERE d.site_id = $1",
        site_id,
    )
    raw = [r for r in raw if r["day"] not in {d["day"] for d in rolled}]
    found = await rollup_of(conn, site_id)
    lo, hi = (found["from_day"], found["through_day"]) if found else (date.max, date.max)
    cells: dict[datetime | None, dict[tuple[str, str], Counts]] = {}
    for row in rows:
        if row["action"] == "erased":
            continue
        cell = (row["rule"] or "", row["variant"] or "")
        day = row["received_at"].astimezone(UTC).date()
        whole = start <= stats_store.midnight(day) and stats_store.midnight(day + ONE_DAY) <= end
        rolled_up = whole and lo <= day < hi  # read from stats_days, as counted then
        one = count_one(row, dropped if dropped is not None and rolled_up else shown_at)
        for key in (bucket_start(row["received_at"], interval), None):
            into = cells.setdefault(key, {})
            into[cell] = into[cell] + one if cell in into else one
    first, last = stats_store.impression_days(start, end)
    seen: dict[datetime | None, dict[tuple[str, str, str], set[tuple[date, bytes]]]] = {}
    counts: dict[datetime | None, dict[tuple[str, str, str], int]] = {}
    visitors: dict[datetime | None, dict[tuple[str, str, str], int]] = {}
    for r in raw:
        if not first <= r["day"] < last:
            continue
        for key in (bucket_start(stats_store.midnight(r["day"]), interval), None):
            for level in (
                (r["rule"], r["variant"], r["surface"]),
                (r["rule"], r["variant"], ""),
                (r["rule"], "*", ""),
                ("*", r["variant"], ""),
                ("*", "*", ""),
            ):
                seen.setdefault(key, {}).setdefault(level, set()).add((r["day"], r["visitor"]))
                at = counts.setdefault(key, {})
                at[level] = at.get(level, 0) + 1

    for d in rolled:
        if not first <= d["day"] < last:
            continue
        for key in (bucket_start(stats_store.midnight(d["day"]), interval), None):
            level = (d["rule"], d["variant"], d["surface"])
            at = counts.setdefault(key, {})
            at[level] = at.get(level, 0) + d["impressions"]
            visitors.setdefault(key, {})[level] = (
                visitors.get(key, {}).get(level, 0) + d["visitors"]
            )

    def tally(key: datetime | None) -> Tally:
        shown = {
            level: (
                n,
                len(seen.get(key, {}).get(level, ())) + visitors.get(key, {}).get(level, 0),
            )
            for level, n in counts.get(key, {}).items()
        }
        return Tally(start=key, cells=cells.get(key, {}), shown=shown)

    keys = sorted(k for k in cells.keys() | counts.keys() if k is not None)
    return [tally(k) for k in keys], tally(None)


def ranges(now: datetime) -> list[tuple[datetime, datetime]]:
    plus2 = timezone(timedelta(hours=2))
    minus5 = timezone(timedelta(hours=-5, minutes=-30))
    d = midnight(now)
    return [
        (d - timedelta(days=60), d),  # whole days
        (d - timedelta(days=45, hours=-13, minutes=-17), d - timedelta(days=3, hours=-5)),
        # midnight at +02:00 and at -05:30: edges off UTC midnight
        (datetime.combine(d.date() - timedelta(days=40), datetime.min.time(), plus2), d),
        (
            datetime.combine(d.date() - timedelta(days=33), datetime.min.time(), minus5),
            datetime.combine(d.date() - timedelta(days=8), datetime.min.time(), minus5),
        ),
        (d - timedelta(days=DAYS_BACK + 5), now + timedelta(hours=1)),  # all, today too
        (d - timedelta(days=5, hours=-12), d - timedelta(days=5, hours=-18)),  # in one day
        (d - timedelta(days=20), d - timedelta(days=19)),  # exactly one day
        (d - timedelta(days=30) + timedelta(microseconds=1), d - timedelta(microseconds=1)),
        (d - timedelta(days=200), d - timedelta(days=100)),  # before every record
        (d, now + timedelta(hours=1)),  # today only
    ]


async def assert_answers_as_counted(
    conn: asyncpg.Connection, site_id: str, state: str, dropped: Times | None = None
) -> int:
    """select_stats == the Python count, for every range and interval; returns how many
    events the widest range counted (so the caller knows the data is there)."""
    now = datetime.now(UTC)
    widest = 0
    for start, end in ranges(now):
        for interval in INTERVALS:
            got = await stats_store.select_stats(
                conn, site_id, start=start, end=end, interval=interval
            )
            want = await recount(conn, site_id, start, end, interval, dropped)
            assert got == want, (state, start, end, interval)
            widest = max(widest, got[1].events)
    return widest


async def all_answers(conn: asyncpg.Connection, site_id: str) -> list[Any]:
    now = datetime.now(UTC)
    return [
        await stats_store.select_stats(conn, site_id, start=start, end=end, interval=interval)
        for start, end in ranges(now)
        for interval in INTERVALS
    ]


def untimed(answer: tuple[list[Tally], Tally]) -> list[Tally]:
    """The answer without the times to decision."""
    return [
        replace(t, cells={k: replace(c, latency={}) for k, c in t.cells.items()})
        for t in (*answer[0], answer[1])
    ]


async def rollup_of(conn: asyncpg.Connection, site_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT from_day, through_day FROM stats_rollup WHERE site_id = $1", site_id
    )


async def stored_days(conn: asyncpg.Connection, site_id: str) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT day, events, rule, variant, accept_all, reject_all, custom, withdraw,"
        " purposes::text, decided::text, interactions, latency::text"
        " FROM stats_days WHERE site_id = $1 ORDER BY day, rule, variant",
        site_id,
    )
    return [tuple(r) for r in rows]


async def assert_days_as_counted(
    conn: asyncpg.Connection, site_id: str, dropped: Times | None = None
) -> None:
    """Each stats_days row is its day's, rule's and variant's count from the records, and
    every rolled-up day with counted records has its rows."""
    found = await rollup_of(conn, site_id)
    assert found is not None
    days: dict[tuple[date, str, str], Counts] = {}
    lo, hi = found["from_day"], found["through_day"]
    if lo < hi:
        buckets, _ = await recount(
            conn, site_id, stats_store.midnight(lo), stats_store.midnight(hi), "day", dropped
        )
        days = {
            (b.start.date(), *cell): counts
            for b in buckets
            if b.start
            for cell, counts in b.cells.items()
        }
    rows = await conn.fetch("SELECT * FROM stats_days WHERE site_id = $1", site_id)
    assert all(lo <= r["day"] < hi for r in rows)
    assert {(r["day"], r["rule"], r["variant"]) for r in rows} == set(days)
    for r in rows:
        assert stats_store.day_counts(r) == days[(r["day"], r["rule"], r["variant"])]


async def test_stats_are_the_same_before_during_and_after_the_rollup_and_after_a_purge(
    fresh: asyncpg.Connection,
) -> None:
    now = datetime.now(UTC)
    await insert_site(fresh, SITE)
    # Each range's partial first day holds a timed decision, so that dropping its raw
    # showings below always changes that day's timing (the spread's own may miss a
    # short partial day, depending on the time of day the test runs).
    partial = [
        start + timedelta(minutes=10) for start, _ in ranges(now) if start != midnight(start)
    ]
    await store(fresh, timed_decisions(SITE, spread_events(SITE, now, seed=12, count=900), partial))
    assert await assert_answers_as_counted(fresh, SITE, "none rolled up") > 500
    _, everything = await stats_store.select_stats(
        fresh, SITE, start=now - timedelta(days=DAYS_BACK + 5), end=now, interval="week"
    )
    assert {"eea", "us-ca", ""} == {rule for rule, _ in everything.cells}
    site = everything.site
    assert site.api_imported and site.gpc_automatic and site.interactions
    assert len(site.latency) > 3 and everything.impressions()[0] > 500

    # Partly: through a day in the middle of the records.
    halfway = midnight(now, 25) + timedelta(minutes=30)
    added = await stats_store.roll_up(fresh, closed_before=halfway)
    rollup = await rollup_of(fresh, SITE)
    assert rollup is not None and rollup["through_day"] == halfway.date()
    first = await fresh.fetchval(
        "SELECT min(received_at) FROM consent_events WHERE site_id = $1", SITE
    )
    assert rollup["from_day"] == first.astimezone(UTC).date()
    assert added == (rollup["through_day"] - rollup["from_day"]).days > CHUNK_DAYS
    await assert_days_as_counted(fresh, SITE)
    await assert_answers_as_counted(fresh, SITE, "rolled up halfway")

    # Through the last closed day.
    added = await stats_store.roll_up(fresh)
    rollup = await rollup_of(fresh, SITE)
    assert rollup is not None and added == (rollup["through_day"] - halfway.date()).days > 0
    await assert_days_as_counted(fresh, SITE)
    await assert_answers_as_counted(fresh, SITE, "rolled up")

    # The answer does come from the rollup: a changed day shows in the stats.
    day = midnight(now, 20)
    before = await stats_store.select_stats(
        fresh, SITE, start=day, end=day + timedelta(days=1), interval="day"
    )
    cell = next(iter(before[1].cells))
    await fresh.execute(
        "UPDATE stats_days SET events = events + 1000"
        " WHERE site_id = $1 AND day = $2 AND rule = $3 AND variant = $4",
        SITE,
        day.date(),
        *cell,
    )
    after = await stats_store.select_stats(
        fresh, SITE, start=day, end=day + timedelta(days=1), interval="day"
    )
    assert after[1].events == before[1].events + 1000
    await fresh.execute(
        "UPDATE stats_days SET events = events - 1000"
        " WHERE site_id = $1 AND day = $2 AND rule = $3 AND variant = $4",
        SITE,
        day.date(),
        *cell,
    )

    # The impressions' closed days rolled up and their raw days dropped (after the
    # stats' rollup, as maintenance runs them): the same answers, from impression_days.
    answers = await all_answers(fresh, SITE)
    times = {
        r["impression_id"]: (r["day"], r["received_at"])
        for r in await fresh.fetch("SELECT impression_id, day, received_at FROM impressions")
    }
    assert await impressions_store.roll_up(fresh)
    assert await fresh.fetchval("SELECT count(*) FROM impressions WHERE site_id = $1", SITE) < 200
    after = await all_answers(fresh, SITE)
    edges = [start for start, _ in ranges(now) for _ in INTERVALS]
    for start, got, was in zip(edges, after, answers, strict=True):
        if start == midnight(start):
            assert got == was
        else:  # a partial first day's decisions are timed only while its showings are kept
            assert untimed(got) == untimed(was)
            assert got[1].site.latency != was[1].site.latency
    await assert_answers_as_counted(fresh, SITE, "impressions rolled up", times)

    # A purge-like cut in the middle of a day: the records before it go, and the rollup
    # forgets the days through the cut's day.
    cut = midnight(now, 35) + timedelta(hours=10, minutes=7)
    await fresh.execute("SET session_replication_role = replica")  # past the guard trigger
    gone = await fresh.execute(
        "DELETE FROM consent_events WHERE site_id = $1 AND received_at < $2", SITE, cut
    )
    await fresh.execute("SET session_replication_role = origin")
    assert int(gone.split()[-1]) > 100
    await stats_store.forget_before(fresh, SITE, cut.date() + timedelta(days=1))
    rollup = await rollup_of(fresh, SITE)
    assert rollup is not None and rollup["from_day"] == cut.date() + timedelta(days=1)
    await assert_days_as_counted(fresh, SITE, times)
    await assert_answers_as_counted(fresh, SITE, "after a purge", times)
    assert await stats_store.roll_up(fresh) == 0  # nothing newly closed
    await assert_answers_as_counted(fresh, SITE, "rolled up after a purge", times)


async def test_only_closed_days_are_rolled_up_and_a_second_run_adds_nothing(
    fresh: asyncpg.Connection,
) -> None:
    await insert_site(fresh, SITE)
    await insert_site(fresh, "rollup-empty")  # no records: starts empty, at the open day
    now = datetime.now(UTC)
    recent = now - timedelta(minutes=30)
    await store(
        fresh,
        [
            new_event(SITE, recent),
            new_event(SITE, now - timedelta(hours=2)),
            new_event(SITE, now - timedelta(days=3)),
            new_event(SITE, now - timedelta(days=9)),
        ],
    )
    before = datetime.now(UTC)
    assert await stats_store.roll_up(fresh) > 0
    after = datetime.now(UTC)
    rollup = await rollup_of(fresh, SITE)
    assert rollup is not None
    # The last closed day: the one that ended an hour (CLOSE_MARGIN) ago; today never is.
    assert rollup["through_day"] in {
        first_open_day(before - CLOSE_MARGIN),
        first_open_day(after - CLOSE_MARGIN),
    }
    assert rollup["through_day"] <= now.date()
    assert recent.date() >= rollup["through_day"]  # the last hour's record is not in it
    assert rollup["from_day"] == (now - timedelta(days=9)).date()
    await assert_days_as_counted(fresh, SITE)
    assert sum(r[1] for r in await stored_days(fresh, SITE)) == sum(
        1
        for at in (now - timedelta(hours=2), now - timedelta(days=3), now - timedelta(days=9))
        if at.date() < rollup["through_day"]
    )
    empty = await rollup_of(fresh, "rollup-empty")
    assert empty is not None and empty["from_day"] == empty["through_day"] <= now.date()

    days = await stored_days(fresh, SITE)
    assert await stats_store.roll_up(fresh) == 0
    assert await stored_days(fresh, SITE) == days
    assert await rollup_of(fresh, SITE) == rollup


async def test_concurrent_runs_count_each_day_once(fresh_dsn: str) -> None:
    conns = [await connect(fresh_dsn) for _ in range(2)]
    try:
        a, b = conns
        now = datetime.now(UTC)
        sites = [f"rollup-{n}" for n in range(4)]
        for n, site_id in enumerate(sites):
            await insert_site(a, site_id)
            await store(a, spread_events(site_id, now, seed=n, count=150))
        added = await asyncio.gather(stats_store.roll_up(a), stats_store.roll_up(b))
        # The one that found the lock taken stopped; whatever each did, no day twice.
        total = 0
        for site_id in sites:
            rollup = await rollup_of(a, site_id)
            if rollup is not None:
                total += (rollup["through_day"] - rollup["from_day"]).days
        assert sum(added) == total
        # Then both again: what is left is done once.
        await asyncio.gather(stats_store.roll_up(a), stats_store.roll_up(b))
        for site_id in sites:
            rollup = await rollup_of(a, site_id)
            assert rollup is not None
            assert rollup["through_day"] == first_open_day(now - CLOSE_MARGIN) or (
                rollup["through_day"] == first_open_day(datetime.now(UTC) - CLOSE_MARGIN)
            )
            await assert_days_as_counted(a, site_id)
            await assert_answers_as_counted(a, site_id, "after concurrent runs")
    finally:
        for conn in conns:
            await conn.close()


async def test_a_site_is_rolled_up_by_one_caller_at_a_time_even_without_the_lock(
    fresh_dsn: str,
) -> None:
    # The advisory lock keeps replicas from doing the same work; the site's rollup row,
    # locked for the transaction, keeps them from counting a day twice regardless.
    a, b = await connect(fresh_dsn), await connect(fresh_dsn)
    try:
        now = datetime.now(UTC)
        await insert_site(a, SITE)
        await store(a, spread_events(SITE, now, seed=5, count=300))
        until = first_open_day(now - CLOSE_MARGIN)
        first_day = (
            await a.fetchval("SELECT min(received_at) FROM consent_events WHERE site_id = $1", SITE)
        ).date()
        async with a.transaction():  # the site's rollup row exists and is committed
            await stats_store.roll_up_site(a, SITE, until=until, first_day=first_day)
        tx = a.transaction()
        await tx.start()
        # a takes the site's row first (as roll_up_site does before it counts) ...
        assert await a.fetchrow(stats_store.SQL["lock_rollup"], SITE) is not None

        async def second() -> int:
            async with b.transaction():
                return await stats_store.roll_up_site(b, SITE, until=until, first_day=first_day)

        waiting = asyncio.create_task(second())
        b_pid = b.get_server_pid()
        for _ in range(600):  # ... so b waits for it
            if await a.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", b_pid
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the second caller never waited for the first")
        assert await stats_store.roll_up_site(a, SITE, until=until, first_day=first_day) == (
            CHUNK_DAYS
        )
        assert not waiting.done()
        await tx.commit()
        # The next chunk, after the first one's days (the log is under three chunks long).
        third = first_day + timedelta(days=2 * CHUNK_DAYS)
        assert third < until < third + timedelta(days=CHUNK_DAYS)
        assert await waiting == (until - third).days
        rollup = await rollup_of(a, SITE)
        assert rollup is not None and rollup["through_day"] == until
        await assert_days_as_counted(a, SITE)
    finally:
        await a.close()
        await b.close()


async def test_forget_before_moves_both_ends_past_the_purged_days(
    fresh: asyncpg.Connection,
) -> None:
    await insert_site(fresh, SITE)
    await insert_site(fresh, "rollup-other")
    now = datetime.now(UTC)
    for site_id in (SITE, "rollup-other"):
        await store(fresh, spread_events(site_id, now, seed=7, count=120))
    await stats_store.roll_up(fresh, closed_before=midnight(now, 30))
    other = await stored_days(fresh, "rollup-other")
    before = await rollup_of(fresh, SITE)
    assert before is not None and before["through_day"] == midnight(now, 30).date()

    # A day inside the rolled-up days: those before it go, the rest stay.
    inside = before["through_day"] - timedelta(days=10)
    kept = [d for d in await stored_days(fresh, SITE) if d[0] >= inside]
    await stats_store.forget_before(fresh, SITE, inside)
    assert await stored_days(fresh, SITE) == kept
    assert tuple(await rollup_of(fresh, SITE) or ()) == (inside, before["through_day"])

    # A day past them: none left, and the rollup goes on from there.
    past = before["through_day"] + timedelta(days=4)
    await stats_store.forget_before(fresh, SITE, past)
    assert await stored_days(fresh, SITE) == []
    assert tuple(await rollup_of(fresh, SITE) or ()) == (past, past)
    # An earlier day later on changes nothing.
    await stats_store.forget_before(fresh, SITE, inside)
    assert tuple(await rollup_of(fresh, SITE) or ()) == (past, past)

    assert await stored_days(fresh, "rollup-other") == other  # another site's untouched
    await stats_store.roll_up(fresh)
    await assert_days_as_counted(fresh, SITE)
    await assert_answers_as_counted(fresh, SITE, "after forget_before")


async def test_the_maintenance_loop_rolls_up(fresh_dsn: str) -> None:
    conn = await connect(fresh_dsn)

    async def rolled_up() -> bool:
        rollup = await rollup_of(conn, SITE)
        return rollup is not None and rollup["through_day"] > rollup["from_day"]

    try:
        async with maintenance_running(fresh_dsn):
            await insert_site(conn, SITE)
            await store(conn, [new_event(SITE, datetime.now(UTC) - timedelta(days=3))])
            await eventually(rolled_up, "did not roll up")
        await assert_days_as_counted(conn, SITE)
    finally:
        await conn.close()


async def test_a_retention_purge_leaves_the_stats_as_counted_from_what_it_kept(
    fresh: asyncpg.Connection,
) -> None:
    # The real purge: its cut falls inside a day (retention counts from now), so that
    # day is partly purged and must be counted from the records it kept.
    now = datetime.now(UTC)
    await insert_site(fresh, SITE, retention_days=30, validity_days=30)
    # One append per event, oldest first: seq follows received_at, as in production.
    events, _ = spread_events(SITE, now, seed=5, count=300)
    for event in sorted(events, key=lambda e: e.received_at):
        await append(fresh, [event])
    assert await stats_store.roll_up(fresh) > 30
    before = await fresh.fetchval("SELECT count(*) FROM consent_events WHERE site_id = $1", SITE)

    done = [p for p in await purge(fresh, Signer.generate()) if p.site_id == SITE]

    left = await fresh.fetchval("SELECT count(*) FROM consent_events WHERE site_id = $1", SITE)
    assert len(done) == 1 and 0 < left < before and done[0].deleted == before - left
    # Past the day of the newest purged record (it may be the day before the boundary's,
    # when no record fell in the last hours before it).
    newest_purged = max(e.received_at for e in events if e.received_at < now - timedelta(days=30))
    rollup = await rollup_of(fresh, SITE)
    assert rollup is not None and rollup["from_day"] > newest_purged.date()
    await assert_days_as_counted(fresh, SITE)
    await assert_answers_as_counted(fresh, SITE, "after the retention purge")
