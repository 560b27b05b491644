"""Consent statistics: one aggregate query over the log, counted in PostgreSQL, and the
per-day rollup that keeps its cost independent of the range.

The database does the counting (per UTC day, rule and variant in `cmp_stats_days`,
purposes through `jsonb_each`), so the cost in Python is one small row per day, rule and
variant whatever the volume; they are summed here into buckets. `roll_up` stores the
counts of closed days in `stats_days`; the stats read those and count only the other
days from the records. Impressions come from their own daily counts
(cmp.store.impressions), read in the same snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Literal

import asyncpg

from cmp.store.coordination import ROLLUP_LOCK, try_lock
from cmp.store.impressions import EVERY, select_impression_days
from cmp.store.sqlfiles import queries

SQL = queries("stats")

Interval = Literal["day", "week", "month"]
INTERVALS: Final[tuple[Interval, ...]] = ("day", "week", "month")
# The consent actions; `erased` records are bookkeeping, not consent, and never counted.
ACTIONS: Final = ("accept_all", "reject_all", "custom", "withdraw")
# The actions that answer a showing (the funnel's last step); a withdrawal answers none.
ANSWERS: Final = ("accept_all", "custom", "reject_all")
# A UTC day is closed, and rolled up, once it ended this long ago: received_at is the
# arrival time taken by a server process, which commits it within seconds, and the
# clocks of replicas differ a little.
CLOSE_MARGIN: Final = timedelta(hours=1)
# Days counted per transaction, so that the first rollup of a large log is many short
# transactions, not one that holds the site's rollup row for the whole log.
CHUNK_DAYS: Final = 31


Cell = tuple[str, str]  # (rule, variant): '' where the record or impression has none
Level = tuple[str, str, str]  # (rule, variant, surface) of impressions; EVERY / '' = all


def _sum_pairs(
    a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    out = dict(a)
    for key, (granted, asked) in b.items():
        g, n = out.get(key, (0, 0))
        out[key] = (g + granted, n + asked)
    return out


def _sum_counts(a: dict[Any, int], b: dict[Any, int]) -> dict[Any, int]:
    out = dict(a)
    for key, n in b.items():
        out[key] = out.get(key, 0) + n
    return out


@dataclass(frozen=True, slots=True)
class Counts:
    """What one group of decisions counts (sql/functions/stats.sql says what each is)."""

    events: int = 0
    actions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))
    # purpose -> (granted, asked): asked = events whose policy version offered it.
    purposes: dict[str, tuple[int, int]] = field(default_factory=dict)
    decisions: int = 0  # neither API-imported nor GPC-automatic
    decided: dict[str, tuple[int, int]] = field(default_factory=dict)
    interactions: int = 0  # of those, answers to a showing (not withdraw)
    answered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ANSWERS, 0))
    granted: dict[str, int] = field(default_factory=dict)  # purpose -> granted in them
    api_imported: int = 0
    gpc_automatic: int = 0
    latency: dict[int, int] = field(default_factory=dict)  # bin seconds -> interactions

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            events=self.events + other.events,
            actions=_sum_counts(self.actions, other.actions),
            purposes=_sum_pairs(self.purposes, other.purposes),
            decisions=self.decisions + other.decisions,
            decided=_sum_pairs(self.decided, other.decided),
            interactions=self.interactions + other.interactions,
            answered=_sum_counts(self.answered, other.answered),
            granted=_sum_counts(self.granted, other.granted),
            api_imported=self.api_imported + other.api_imported,
            gpc_automatic=self.gpc_automatic + other.gpc_automatic,
            latency=_sum_counts(self.latency, other.latency),
        )


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts for one bucket, or for the whole range when `start` is None: the decisions
    per (rule, variant) and the impressions per level (EVERY rule or variant, surface ''
    every surface; each level counts a visitor once a day)."""

    start: datetime | None
    cells: dict[Cell, Counts]
    shown: dict[Level, tuple[int, int]] = field(default_factory=dict)  # (impressions, visitors)
    # When some of its impressions are provisional counts: the oldest of their times.
    as_of: datetime | None = None

    @property
    def site(self) -> Counts:
        return sum(self.cells.values(), Counts())

    @property
    def events(self) -> int:
        return sum(c.events for c in self.cells.values())

    @property
    def actions(self) -> dict[str, int]:
        return self.site.actions

    @property
    def purposes(self) -> dict[str, tuple[int, int]]:
        return self.site.purposes

    def opt_in(self) -> dict[str, float]:
        """Share of the events offering each purpose that granted it (4 decimals)."""
        return {
            key: round(granted / asked, 4)
            for key, (granted, asked) in sorted(self.purposes.items())
            if asked
        }

    def counts(self, rule: str = EVERY, variant: str = EVERY) -> Counts:
        """The decisions of one rule and/or variant (EVERY: all)."""
        return sum(
            (c for (r, v), c in self.cells.items() if rule in (EVERY, r) and variant in (EVERY, v)),
            Counts(),
        )

    def impressions(self, rule: str = EVERY, variant: str = EVERY) -> tuple[int, int]:
        """(impressions, visitors counted once a day) of one rule and/or variant."""
        return self.shown.get((rule, variant, ""), (0, 0))


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


def day_counts(r: asyncpg.Record) -> Counts:
    """One (day, rule, variant) row of `cmp_stats_days` or `stats_days`."""

    def pairs(m: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
        return {key: (int(v[0]), int(v[1])) for key, v in m.items()}

    return Counts(
        events=r["events"],
        actions={action: r[action] for action in ACTIONS},
        purposes=pairs(r["purposes"]),
        decisions=r["decisions"],
        decided=pairs(r["decided"]),
        interactions=r["interactions"],
        answered={a: int(r["answered"].get(a, 0)) for a in ANSWERS},
        granted={key: int(n) for key, n in r["granted"].items()},
        api_imported=r["api_imported"],
        gpc_automatic=r["gpc_automatic"],
        latency={int(key): int(n) for key, n in r["latency"].items()},
    )


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def stats_args(
    site_id: str,
    start: datetime,
    end: datetime,
    rollup: tuple[date, date] | None,
) -> tuple[object, ...]:
    """The parameters of `select_stats` for [start, end) given the site's rolled-up days
    [from_day, through_day): those of them that are whole days of the range are read
    from the rollup, the rest of the range from the records."""
    none = (site_id, start, end, end, end, date.max, date.max)
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
    return (site_id, start, end, midnight(lo), midnight(hi), lo, hi)


def impression_days(start: datetime, end: datetime) -> tuple[date, date]:
    """The UTC days [first, end) whose impressions a range counts: those that begin in it
    (impressions are kept per day, so a range's partial first day has none of them)."""
    first = start.astimezone(UTC).date()
    if midnight(first) < start:
        first = first + timedelta(days=1) if first < date.max else first
    last = end.astimezone(UTC).date()
    if midnight(last) < end and last < date.max:
        last += timedelta(days=1)
    return first, max(first, last)


def _add(into: dict[Any, Counts], key: Any, counts: Counts) -> None:
    into[key] = into[key] + counts if key in into else counts


def _add_shown(into: dict[Level, tuple[int, int]], key: Level, shown: tuple[int, int]) -> None:
    was = into.get(key, (0, 0))
    into[key] = (was[0] + shown[0], was[1] + shown[1])


async def select_stats(
    conn: asyncpg.Connection,
    site_id: str,
    *,
    start: datetime,
    end: datetime,
    interval: Interval,
) -> tuple[list[Tally], Tally]:
    """(buckets with at least one decision or impression, oldest first; totals) for
    [start, end)."""
    if interval not in INTERVALS:  # an unknown unit would be a database error, not a 422
        raise ValueError(f"interval must be one of {INTERVALS}")
    # One snapshot for the rollup's extent and the counts: a purge that trims the rollup
    # between the two would leave its partly purged day uncounted.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        found = await conn.fetchrow(SQL["select_rollup"], site_id)
        rollup = (found["from_day"], found["through_day"]) if found else None
        args = stats_args(site_id, start, end, rollup)
        days = await conn.fetch(SQL["select_stats"], *args)
        shown = await select_impression_days(conn, site_id, *impression_days(start, end))
    # Summed here per bucket: rows are per day, rule and variant, never per record.
    cells: dict[datetime, dict[Cell, Counts]] = {}
    totals: dict[Cell, Counts] = {}
    for r in days:
        bucket = bucket_start(midnight(r["day"]), interval)
        counts = day_counts(r)
        _add(cells.setdefault(bucket, {}), (r["rule"], r["variant"]), counts)
        _add(totals, (r["rule"], r["variant"]), counts)
    levels: dict[datetime, dict[Level, tuple[int, int]]] = {}
    all_levels: dict[Level, tuple[int, int]] = {}
    as_of: dict[datetime, datetime] = {}
    for d in shown:
        level = (d.rule, d.variant, d.surface)
        bucket = bucket_start(midnight(d.day), interval)
        _add_shown(levels.setdefault(bucket, {}), level, (d.impressions, d.visitors))
        _add_shown(all_levels, level, (d.impressions, d.visitors))
        if d.as_of is not None:
            as_of[bucket] = min(as_of.get(bucket, d.as_of), d.as_of)
    buckets = [
        Tally(start=b, cells=cells.get(b, {}), shown=levels.get(b, {}), as_of=as_of.get(b))
        for b in sorted(cells.keys() | levels.keys())
    ]
    oldest = min(as_of.values(), default=None)
    return buckets, Tally(start=None, cells=totals, shown=all_levels, as_of=oldest)


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
