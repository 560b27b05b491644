"""Consent statistics: one aggregate query over the log, counted in PostgreSQL.

The database does the counting (GROUP BY over `date_trunc` buckets, purposes through
`jsonb_each`), so the cost in Python is one small row per bucket whatever the volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import asyncpg

from cmp.store.sqlfiles import queries

SQL = queries("stats")

Interval = Literal["day", "week", "month"]
INTERVALS: Final[tuple[Interval, ...]] = ("day", "week", "month")
# The consent actions; `erased` records are bookkeeping, not consent, and never counted.
ACTIONS: Final = ("accept_all", "reject_all", "custom", "withdraw")


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
    records = await conn.fetch(SQL["select_stats"], site_id, start, end, interval)
    tallies = [_tally(r) for r in records]
    # The grouping set () yields the totals row even over no events; it sorts last.
    totals = tallies.pop()
    assert totals.start is None
    return tallies, totals
