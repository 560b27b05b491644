"""Provisional counts of the days not rolled up (issue 22, docs/log-storage.md): the
maintenance refresh keeps them only for a site over the threshold, the stats read takes
them (with their as_of) until the next refresh, a small site stays exact, the rollup
removes them, and two refreshes at once leave one consistent set."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from cmp.store import impressions as store
from cmp.store import stats as stats_store
from cmp.store.db import connect
from cmp.store.events import Submission
from cmp.store.impressions import EVERY, NewImpression, write_impressions
from tests.store.maintenance_loop import eventually, maintenance_running

BIG, SMALL = "big-site", "small-site"
THRESHOLD = 50


async def show(conn: asyncpg.Connection, site_id: str, n: int, first: int = 0) -> None:
    """`n` impressions of visitors first … first + n − 1 (a third of them on the settings
    layer, the even ones under rule 'gdpr'), received now."""
    at = datetime.now(UTC)
    shown = [
        NewImpression(
            site_id,
            str(uuid.uuid4()),
            i.to_bytes(8),
            1,
            "settings" if i % 3 == 0 else "banner",
            "",
            at,
            "gdpr" if i % 2 == 0 else "default",
        )
        for i in range(first, first + n)
    ]
    await write_impressions(conn, [Submission(shown)])


async def big_and_small(conn: asyncpg.Connection) -> None:
    await show(conn, BIG, 60)
    await show(conn, SMALL, 10)
    await conn.execute("ANALYZE")  # the statistics the candidates come from


def today() -> tuple[datetime, datetime]:
    day = datetime.now(UTC).date()
    return stats_store.midnight(day), stats_store.midnight(day + timedelta(days=1))


async def provisional(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT site_id, day, rule, variant, surface, impressions, visitors, as_of"
        " FROM impression_provisional ORDER BY site_id, rule, variant, surface"
    )


async def exact(conn: asyncpg.Connection, site_id: str) -> set[tuple[str, str, str, int, int]]:
    day = datetime.now(UTC).date()
    rows = await conn.fetch(
        "SELECT rule, variant, surface, impressions, visitors"
        " FROM cmp_impression_counts($1::text, $2::date, $2::date + 1)",
        site_id,
        day,
    )
    return {tuple(r.values()) for r in rows}  # type: ignore[misc]


async def test_the_refresh_keeps_counts_only_of_a_site_over_the_threshold(
    fresh: asyncpg.Connection,
) -> None:
    await big_and_small(fresh)
    assert await store.refresh_provisional(fresh, threshold=THRESHOLD) == 1
    kept = await provisional(fresh)
    assert {r["site_id"] for r in kept} == {BIG}
    assert {
        (r["rule"], r["variant"], r["surface"], r["impressions"], r["visitors"]) for r in kept
    } == await exact(fresh, BIG)
    assert len({r["as_of"] for r in kept}) == 1
    # Fresh enough: a refresh that wants them older than a minute takes nothing again.
    assert (
        await store.refresh_provisional(fresh, threshold=THRESHOLD, min_age=timedelta(minutes=1))
        == 0
    )


async def test_the_maintenance_loop_refreshes_them(fresh_dsn: str) -> None:
    conn = await connect(fresh_dsn)
    try:
        async with maintenance_running(fresh_dsn, provisional_threshold=THRESHOLD):
            await big_and_small(conn)
            kept = await eventually(lambda: provisional(conn), "took no provisional counts")
        assert {r["site_id"] for r in kept} == {BIG}
    finally:
        await conn.close()


async def test_the_stats_read_takes_the_provisional_counts_until_the_next_refresh(
    fresh: asyncpg.Connection,
) -> None:
    await big_and_small(fresh)
    await store.refresh_provisional(fresh, threshold=THRESHOLD)
    (as_of,) = {r["as_of"] for r in await provisional(fresh)}
    await show(fresh, BIG, 1, first=1000)  # a new visitor, after the refresh
    await show(fresh, SMALL, 1, first=1000)
    start, end = today()

    async def read(site_id: str) -> tuple[list[stats_store.Tally], stats_store.Tally]:
        return await stats_store.select_stats(fresh, site_id, start=start, end=end, interval="day")

    (bucket,), totals = await read(BIG)
    assert totals.impressions() == (60, 60) and bucket.impressions() == (60, 60)
    assert bucket.as_of == totals.as_of == as_of
    assert totals.impressions("gdpr") == (30, 30)
    # A small site stays exact: its new impression is counted at once.
    (small,), small_totals = await read(SMALL)
    assert small_totals.impressions() == (11, 11) and small.as_of is small_totals.as_of is None
    # The next refresh takes the new one in, as of later.
    assert await store.refresh_provisional(fresh, threshold=THRESHOLD) == 1
    (bucket,), totals = await read(BIG)
    assert totals.impressions() == (61, 61) and bucket.as_of is not None and bucket.as_of > as_of


async def test_rolling_the_day_up_removes_the_provisional_counts(
    fresh: asyncpg.Connection,
) -> None:
    await big_and_small(fresh)
    await store.refresh_provisional(fresh, threshold=THRESHOLD)
    await show(fresh, BIG, 5, first=1000)  # after the refresh: the rollup counts them
    day = datetime.now(UTC).date()
    assert day in await store.roll_up(fresh, now=datetime.now(UTC) + timedelta(days=1, hours=2))
    assert await provisional(fresh) == []
    days = await store.select_impression_days(fresh, BIG, day, day + timedelta(days=1))
    assert {(d.impressions, d.as_of) for d in days if d.rule == d.variant == EVERY} == {(65, None)}


async def test_two_refreshes_at_once_leave_one_consistent_set(fresh_dsn: str) -> None:
    one, two = await connect(fresh_dsn), await connect(fresh_dsn)
    try:
        await big_and_small(one)
        for round_ in range(5):
            await show(one, BIG, 3, first=100 + 3 * round_)
            done = await asyncio.gather(
                store.refresh_provisional(one, threshold=THRESHOLD),
                store.refresh_provisional(two, threshold=THRESHOLD),
            )
            assert sum(done) >= 1, done
            kept = await provisional(one)
            assert len({r["as_of"] for r in kept}) == 1
            assert {
                (r["rule"], r["variant"], r["surface"], r["impressions"], r["visitors"])
                for r in kept
            } == await exact(one, BIG)
    finally:
        await one.close()
        await two.close()
