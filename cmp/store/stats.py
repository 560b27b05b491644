"""Consent statistics: one aggregate query over the log, counted in PostgreSQL, and the
per-day rollup that keeps its cost independent of the range.

The database does the counting (per UTC day in `cmp_stats_days`, summed into
`date_trunc` buckets, purposes through `jsonb_each`), so the cost in Python is one small
row per bucket whatever the volume. `roll_up` stores the counts of closed days in
`stats_days`; the stats read those and count only the other days from the records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal

import asyncpg

from cmp.store.coordination import ROLLUP_LOCK, try_lock
from cmp.store.sqlfiles import queries

SQL = queries("stats")

Interval = Literal["day", "week", "month"]
INTERVALS: Final[tuple[Interval, ...]] = ("day", "week", "month")
# The consent actions; `erased` records are bookkeeping, not consent, and never counted.
ACTIONS: Final = ("accept_all", "reject_all", "custom", "withdraw")
# A UTC day is closed, and rolled up, once it ended this long ago: received_at is the
# arrival time taken by a server process, which commits it within seconds, and the
# clocks of replicas differ a little.
CLOSE_MARGIN: Final = timedelta(hours=1)
# Days counted per transaction, so that the first rollup of a large log is many short
# transactions, not one that holds the site's rollup row for the whole log.
CHUNK_DAYS: Final = 31


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts for one bucket, or for the whole range when `start` is None."""

    start: datetime | None
    events: int
    actions: dict[str, int]
    # purpose -> (granted, asked): asked = events whose policy version offered it.
    purposes: dict[str, tuple[int, int]]

    def opt_in(self) -> dict[str, float]:
        """Share of the events offering each purpose that granted it (4 decimals)."""
        return {
            key: round(granted / asked, 4)
            for key, (granted, asked) in sorted(self.purposes.items())
            if asked
        }


def bucket_start(ts: datetime, interval: Interval) -> datetime:
    """The bucket `ts` falls in: Python's mirror of the query's `date_trunc(…, 'UTC')`.

    Weeks start on Monday (ISO), as in PostgreSQL. The page uses it to lay out the
    requested range; a test holds it to PostgreSQL's own answers.
    """
    day = ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _tally(record: asyncpg.Record) -> Tally:
    return Tally(
        start=None if record["total"] else record["bucket"],
        events=record["events"],
        actions={action: record[action] for action in ACTIONS},
        purposes={key: (int(pair[0]), int(pair[1])) for key, pair in record["purposes"].items()},
    )


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def stats_args(
    site_id: str,
    start: datetime,
    end: datetime,
    interval: Interval,
    rollup: tuple[date, date] | None,
) -> tuple[object, ...]:
    """The parameters of `select_stats` for [start, end) given the site's rolled-up days
    [from_day, through_day): those of them that are whole days of the range are read
    from the rollup, the rest of the range from the records."""
    none = (site_id, start, end, interval, end, end, date.max, date.max)
    if rollup is None:
        return none
    first = start.astimezone(UTC).date()
    if midnight(first) < start:  # a partial first day is counted from the records
        if first == date.max:
            return none
        first += timedelta(days=1)
    lo, hi = max(rollup[0], first), min(rollup[1], end.astimezone(UTC).date())
    if lo >= hi:
        return none
    return (site_id, start, end, interval, midnight(lo), midnight(hi), lo, hi)


async def select_stats(
    conn: asyncpg.Connection,
    site_id: str,
    *,
    start: datetime,
    end: datetime,
    interval: Interval,
) -> tuple[list[Tally], Tally]:
    """(buckets with at least one event, oldest first; totals) for [start, end)."""
    if interval not in INTERVALS:  # an unknown unit would be a database error, not a 422
        raise ValueError(f"interval must be one of {INTERVALS}")
    # One snapshot for the rollup's extent and the counts: a purge that trims the rollup
    # between the two would leave its partly purged day uncounted.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        found = await conn.fetchrow(SQL["select_rollup"], site_id)
        rollup = (found["from_day"], found["through_day"]) if found else None
        args = stats_args(site_id, start, end, interval, rollup)
        records = await conn.fetch(SQL["select_stats"], *args)
    tallies = [_tally(r) for r in records]
    # The grouping set () yields the totals row even over no events; it sorts last.
    totals = tallies.pop()
    assert totals.start is None
    return tallies, totals


def first_open_day(closed_before: datetime) -> date:
    """The first UTC day that has not ended by `closed_before`: the days before it are
    closed."""
    return closed_before.astimezone(UTC).date()


async def roll_up(conn: asyncpg.Connection, *, closed_before: datetime | None = None) -> int:
    """Extend every site's rolled-up days through the last day closed by `closed_before`
    (default: now − CLOSE_MARGIN); returns how many site-days were added.

    One transaction per site and at most CHUNK_DAYS days, each under the rollup's
    advisory lock: when another process holds it, this one stops (that one is rolling
    up). Run it again and it adds nothing until another day closes.
    """
    if closed_before is None:
        closed_before = datetime.now(UTC) - CLOSE_MARGIN
    until = first_open_day(closed_before)
    added = 0
    for row in await conn.fetch(SQL["select_sites_to_roll_up"], until):
        while True:
            async with conn.transaction():
                if not await try_lock(conn, ROLLUP_LOCK):
                    return added
                days = await roll_up_site(
                    conn, row["site_id"], until=until, first_day=row["first_day"]
                )
            if not days:
                break
            added += days
    return added


async def roll_up_site(
    conn: asyncpg.Connection, site_id: str, *, until: date, first_day: date | None = None
) -> int:
    """Roll up the next days of one site, at most CHUNK_DAYS of them and none from
    `until` on; returns how many days were added (0: up to date). Call inside a
    transaction: the site's rollup row stays locked until it ends, so concurrent calls
    take turns and each counts the days after the other's."""
    # A site without a rollup starts at its first stored record (or at `until`, when it
    # has none): days before from_day are counted from the records anyway.
    start = min(first_day or until, until)
    await conn.execute(SQL["start_rollup"], site_id, start)
    found = await conn.fetchrow(SQL["lock_rollup"], site_id)
    if found is None:  # the site itself is gone
        return 0
    lo: date = found["through_day"]
    hi = min(lo + timedelta(days=CHUNK_DAYS), until)
    if hi <= lo:
        return 0
    await conn.fetchval(SQL["roll_up_days"], site_id, lo, hi)
    return (hi - lo).days


async def forget_before(conn: asyncpg.Connection, site_id: str, day: date) -> None:
    """After a retention purge of the site's records: drop its rolled-up days before
    `day` and count those days from the records from now on.

    `day` must be after the UTC day of every purged record (e.g. the day after the
    newest purged record's), so the days from it on are whole; the partly purged day
    before it is then counted from what is left of it. Call it in the purge's
    transaction, so that no reader sees the records gone and their counts still there.
    """
    await conn.execute(SQL["forget_days_before"], site_id, day)


async def forget_purged(conn: asyncpg.Connection, site_id: str, cut_received_at: datetime) -> None:
    """`forget_before` after a purge through the record received at `cut_received_at`.

    The purged records are those up to the cut by seq; one of them may have been
    received a little after the cut record (seq is given at commit, in turn), but never
    by CLOSE_MARGIN, so the day after that instant's is past every purged record's.
    """
    day = (cut_received_at + CLOSE_MARGIN).astimezone(UTC).date() + timedelta(days=1)
    await forget_before(conn, site_id, day)
