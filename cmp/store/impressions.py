"""Impressions (docs/api.md): counted in group-committed batches, rolled up by day.

An impression is a statistic, not proof: it is not chained, and its raw row lives only
as long as two things need it (RAW_DAYS): the dedup, which looks one day back for a
retry from the banner's queue (the banner drops a queued impression after a day), and
the day's rollup, which counts its unique visitors once the day has closed. After that
the day's partition is dropped whole (sql/functions/impressions.sql); the counts stay in
`impression_days`.

The days not rolled up are counted from their raw rows on each stats read, exactly;
for a site with more than PROVISIONAL_THRESHOLD of them on such a day that count is
taken by the maintenance loop instead (`refresh_provisional`), kept with its `as_of`
in `impression_provisional`, and read from there until the day is rolled up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

import asyncpg

from cmp.store.coordination import PROVISIONAL_LOCK, try_lock, wait_lock
from cmp.store.events import DUPLICATE, NEW, Submission
from cmp.store.sqlfiles import queries

SQL = queries("impressions")

# Raw days kept behind today: yesterday (the dedup's look-back, and the day being
# rolled up once it closed) and the day before (slack for a rollup that was late).
RAW_DAYS: Final = 2
DAYS_AHEAD: Final = 2  # partitions made ahead, so the insert's on-demand one is a fallback
# A day is closed, and rolled up, this long after it ended (as the event stats').
CLOSE_MARGIN: Final = timedelta(hours=1)
DROP_LOCK_WAIT: Final = "1s"
# A site with this many raw impressions on a day not rolled up gets provisional counts
# of it: counting that many on every stats read takes seconds.
PROVISIONAL_THRESHOLD: Final = 100_000
# How old provisional counts may grow before the maintenance loop takes them again: a
# refresh of every big site's open day is seconds of the database's time at size
# (loadtest/README.md), so not every checkpoint interval.
PROVISIONAL_EVERY: Final = timedelta(minutes=5)
# Memory of an exact count's sorts, so that they do not spill to disk: a read counts
# fewer than PROVISIONAL_THRESHOLD rows a day; the refresh counts more, one at a time
# (under PROVISIONAL_LOCK), so it may take more.
READ_WORK_MEM: Final = "32MB"
REFRESH_WORK_MEM: Final = "256MB"
# The columns of `cmp_new_impression` (sql/schema/0016), in order.
NEW_IMPRESSION_COLUMNS: Final = (
    "site_id",
    "impression_id",
    "visitor",
    "policy_version",
    "surface",
    "variant",
    "received_at",
    "rule",
)


@dataclass(frozen=True, slots=True)
class NewImpression:
    site_id: str
    impression_id: str
    visitor: bytes  # keyed digest of the subject id (cmp.ingest.impressions)
    policy_version: int
    surface: str
    variant: str  # '' without variants
    received_at: datetime
    rule: str  # the visitor's jurisdiction rule (cmp.jurisdiction)


def _row(i: NewImpression) -> tuple[object, ...]:
    return (
        i.site_id,
        i.impression_id,
        i.visitor,
        i.policy_version,
        i.surface,
        i.variant,
        i.received_at,
        i.rule,
    )


async def write_impressions(
    conn: asyncpg.Connection, batch: list[Submission[NewImpression]]
) -> list[Submission[NewImpression]]:
    """Count a batch in one statement; each submission's outcomes say which impressions
    were new (the first of repeats within the batch) and which counted before."""
    rows = [_row(i) for s in batch for i in s.events]
    counted = {
        (r["site_id"], r["impression_id"]) for r in await conn.fetch(SQL["count_impressions"], rows)
    }
    for submission in batch:
        outcomes = []
        for i in submission.events:
            key = (i.site_id, i.impression_id)
            outcomes.append(NEW if key in counted else DUPLICATE)
            counted.discard(key)
        submission.outcomes = outcomes
    return []


async def make_partitions_ahead(conn: asyncpg.Connection, days: int = DAYS_AHEAD) -> int:
    return int(await conn.fetchval(SQL["partitions_ahead"], days))


async def roll_up(conn: asyncpg.Connection, *, now: datetime | None = None) -> list[date]:
    """Roll up every closed day not rolled up yet, then drop the raw days no longer
    needed; returns the days rolled up now."""
    now = now or datetime.now(UTC)
    first_open = (now - CLOSE_MARGIN).astimezone(UTC).date()
    rolled = []
    for record in await conn.fetch(SQL["days_to_roll_up"], first_open):
        async with conn.transaction():
            # After a refresh of the day's provisional counts that runs now: the rollup
            # deletes them, and must see them to.
            await wait_lock(conn, PROVISIONAL_LOCK)
            if await conn.fetchval(SQL["roll_up_day"], record["day"]):
                rolled.append(record["day"])
    await drop_raw_days(conn, now=now)
    return rolled


async def drop_raw_days(conn: asyncpg.Connection, *, now: datetime | None = None) -> list[str]:
    """Drop the partitions of rolled-up days older than RAW_DAYS behind today."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    async with conn.transaction():
        records = await conn.fetch(
            SQL["drop_days_before"], today - timedelta(days=RAW_DAYS), DROP_LOCK_WAIT
        )
    return [r["part"] for r in records]


async def refresh_provisional(
    conn: asyncpg.Connection,
    *,
    threshold: int = PROVISIONAL_THRESHOLD,
    min_age: timedelta = timedelta(0),
) -> int:
    """Take again the provisional counts of every day not rolled up of every site with
    `threshold` raw impressions or more that day, where they are older than `min_age`;
    returns how many (site, day) were counted.

    One transaction per site and day under PROVISIONAL_LOCK (a plain SELECT and INSERT
    otherwise: ingest never waits); when another process holds it, this one stops (that
    one is refreshing). The candidates come from the partition's statistics, not from a
    count: a per-site count of the day is a scan of its primary key, as costly as a
    refresh; a site the statistics miss stays exact (slower, never wrong).
    """
    counted = 0
    for record in await conn.fetch(SQL["days_to_roll_up"], date.max):
        day = record["day"]
        for site in await conn.fetch(SQL["provisional_candidates"], day, threshold):
            async with conn.transaction():
                if not await try_lock(conn, PROVISIONAL_LOCK):
                    return counted
                if not await conn.fetchval(SQL["provisional_due"], site["site_id"], day, min_age):
                    continue
                await conn.fetchval(SQL["set_count_work_mem"], REFRESH_WORK_MEM)
                await conn.execute(SQL["delete_provisional"], site["site_id"], day)
                await conn.fetchval(SQL["insert_provisional"], site["site_id"], day, threshold)
                counted += 1
    return counted


# The level of impression_days rows that covers every rule, or every variant.
EVERY: Final = "*"


@dataclass(frozen=True, slots=True)
class ImpressionDay:
    day: date
    rule: str  # EVERY: all rules
    variant: str  # EVERY: all variants; '' without variants
    surface: str  # '' = every surface
    impressions: int
    visitors: int  # each visitor once in the day, at this level
    as_of: datetime | None = None  # when provisional: the time of its count


async def select_impression_days(
    conn: asyncpg.Connection, site_id: str, first: date, end: date
) -> list[ImpressionDay]:
    """The site's impressions per day in [first, end), at every level (rule, variant,
    surface, and their EVERY and '' totals); `as_of` on the days read from their
    provisional counts."""
    async with conn.transaction():  # the scope of the exact counts' memory
        await conn.fetchval(SQL["set_count_work_mem"], READ_WORK_MEM)
        rows = await conn.fetch(SQL["select_impression_days"], site_id, first, end)
    return [
        ImpressionDay(
            r["day"],
            r["rule"],
            r["variant"],
            r["surface"],
            r["impressions"],
            r["visitors"],
            r["as_of"],
        )
        for r in rows
    ]
