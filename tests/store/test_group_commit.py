"""Group commit's flushes: a second one starts beside a flush in flight only for a batch
worth its transaction (cmp.commit.OVERLAP_EVENTS), on a real pool and database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from cmp.commit import OVERLAP_EVENTS, GroupCommitter
from cmp.metrics import Metrics
from cmp.store.db import create_pool
from cmp.store.events import NEW, Submission

# Long enough for a flush that should not start to have started (it never can fail a
# correct committer: it only waits for something that must not happen).
SETTLE = 0.3
WAIT = 30.0  # for something that must happen, however loaded the machine


class Flushes:
    """A writer that holds the first flush until `release` is set, and records what each
    flush took and how many ran at once."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.active = 0
        self.most = 0
        self.release = asyncio.Event()
        self._entered = asyncio.Condition()

    async def write(
        self, conn: asyncpg.Connection, batch: list[Submission[int]]
    ) -> list[Submission[int]]:
        self.active += 1
        self.most = max(self.most, self.active)
        self.sizes.append(sum(len(s.events) for s in batch))
        async with self._entered:
            self._entered.notify_all()
        try:
            await conn.execute("SELECT 1")
            if len(self.sizes) == 1:
                await self.release.wait()
        finally:
            self.active -= 1
        for s in batch:
            s.outcomes = [NEW] * len(s.events)
        return []

    async def reach(self, most: int) -> None:
        async with asyncio.timeout(WAIT), self._entered:
            await self._entered.wait_for(lambda: self.most >= most)


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_dsn, 4)
    yield pool
    await pool.close()


@contextlib.asynccontextmanager
async def committer(
    pool: asyncpg.Pool, flushes: Flushes, in_flight: int, batch_max: int = 1000
) -> AsyncIterator[GroupCommitter[int]]:
    commits = GroupCommitter(
        pool,
        Metrics(),
        flushes.write,
        batch_max=batch_max,
        in_flight=in_flight,
        queue_max=10_000,
        observed=False,
    )
    try:
        yield commits
    finally:
        await commits.drain()  # gives its held connections back to the pool


async def behind_a_flush(
    commits: GroupCommitter[int], flushes: Flushes, requests: list[int], overlaps: bool
) -> None:
    """One event starts a flush; requests of the given sizes arrive while it is held;
    then a second flush has started beside it (`overlaps`) or, after SETTLE, has not."""
    first = asyncio.create_task(commits.submit([0]))
    await flushes.reach(1)
    rest = [asyncio.create_task(commits.submit(list(range(n)))) for n in requests]
    if overlaps:
        await flushes.reach(2)
    else:
        await asyncio.sleep(SETTLE)
    flushes.release.set()
    outcomes = await asyncio.gather(first, *rest)
    assert [len(o) for o in outcomes] == [1, *requests]


async def test_a_few_events_wait_for_the_flush_in_flight(pool: asyncpg.Pool) -> None:
    flushes = Flushes()
    async with committer(pool, flushes, 2) as commits:
        await behind_a_flush(commits, flushes, [1] * (OVERLAP_EVENTS - 1), overlaps=False)
    assert flushes.most == 1
    assert flushes.sizes == [1, OVERLAP_EVENTS - 1]


async def test_enough_events_start_a_second_flush_beside_it(pool: asyncpg.Pool) -> None:
    flushes = Flushes()
    async with committer(pool, flushes, 2) as commits:
        await behind_a_flush(commits, flushes, [OVERLAP_EVENTS // 2] * 2, overlaps=True)
    assert flushes.most == 2
    assert flushes.sizes == [1, OVERLAP_EVENTS]


async def test_one_flush_in_flight_never_overlaps(pool: asyncpg.Pool) -> None:
    flushes = Flushes()
    async with committer(pool, flushes, 1) as commits:
        await behind_a_flush(commits, flushes, [OVERLAP_EVENTS] * 3, overlaps=False)
    assert flushes.most == 1
    assert flushes.sizes == [1, 3 * OVERLAP_EVENTS]


async def test_a_flush_takes_whole_requests_up_to_the_batch_bound(pool: asyncpg.Pool) -> None:
    # A flush holds its rows until it commits, so what waits beyond `batch_max` goes to
    # the flushes after it; a request is never split, and one bigger than the bound is a
    # flush of its own.
    flushes = Flushes()
    async with committer(pool, flushes, 1, batch_max=250) as commits:
        await behind_a_flush(commits, flushes, [100] * 5 + [300, 40], overlaps=False)
    assert flushes.most == 1
    assert flushes.sizes == [1, 200, 200, 100, 300, 40]
