"""Group commit: concurrent requests share one durable transaction.

Natural batching: a flush starts as soon as a slot is free and takes every submission
waiting at that moment (up to `batch_max` events); while it commits, the next batch
gathers. No timer, so an idle server answers one event at the latency of one commit.
Each request is answered only after the transaction holding its events committed
(`synchronous_commit` on). A full queue or an unreachable database is `Unavailable`.

A batch mixes requests of every site, so one request's bad value must not fail the
others: when PostgreSQL refuses a batch for its data (SQLSTATE classes 22 and 23), the
batch is split in halves and each half written again, down to the one request at fault,
which alone is `Refused`. Validation at the edge makes this rare; this makes it harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import asyncpg

from cmp.metrics import Metrics
from cmp.store.db import DB_ERRORS, HeldConnections, db_error_text
from cmp.store.events import Submission

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The write path cannot take this request now; answer 503 with Retry-After."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(Exception):
    """PostgreSQL refused this request's events for their data; answer 422."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


# Events waiting before a flush starts beside one in flight (see `_start_flushes`).
OVERLAP_EVENTS = 100

# Data exceptions and integrity constraint violations: the rows are at fault, not the
# database, so writing the same rows again fails again.
DATA_ERROR_CLASSES = ("22", "23")


def data_error(exc: BaseException) -> str | None:
    """The SQLSTATE when `exc` is PostgreSQL refusing the data itself, else None."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        if sqlstate[:2] in DATA_ERROR_CLASSES:
            return sqlstate
    return None


R = TypeVar("R")
# Writes a batch in one statement, sets each submission's outcomes, returns the deferred.
Writer = Callable[[asyncpg.Connection, list[Submission[R]]], Awaitable[list[Submission[R]]]]


async def write_isolated(
    conn: asyncpg.Connection, batch: list[Submission[R]], write: Writer[R]
) -> tuple[list[Submission[R]], list[tuple[Submission[R], str]]]:
    """Write `batch`; on a data error, bisect so only the requests at fault are refused.

    Returns (deferred, refused): the submissions to retry in the next batch, and the
    ones refused with their SQLSTATE. One statement per half, each committed by itself.
    """
    try:
        return await write(conn, batch), []
    except asyncpg.PostgresError as exc:
        sqlstate = data_error(exc)
        if sqlstate is None:
            raise
        if len(batch) == 1:
            log.warning("a request's events were refused by the database: SQLSTATE %s", sqlstate)
            return [], [(batch[0], sqlstate)]
    middle = len(batch) // 2
    deferred, refused = await write_isolated(conn, batch[:middle], write)
    more_deferred, more_refused = await write_isolated(conn, batch[middle:], write)
    return deferred + more_deferred, refused + more_refused


class GroupCommitter(Generic[R]):
    """Group commit of the rows `write` stores: events, or impressions (which share
    the algorithm, not the queue)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        write: Writer[R],
        *,
        batch_max: int,
        in_flight: int,
        queue_max: int,
        timeout_seconds: float = 10.0,
        observed: bool = True,
    ) -> None:
        self._connections = HeldConnections(pool)
        self._metrics = metrics
        self._write = write
        self._batch_max = batch_max
        self._slots = in_flight
        self._queue_max = queue_max
        self._timeout = timeout_seconds
        self._pending: deque[tuple[Submission[R], asyncio.Future[None]]] = deque()
        self._pending_events = 0
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # The metrics describe the event log's committer; another one leaves them alone.
        self._observed = observed
        if observed:
            # Read when /metrics is scraped, not set on every request.
            metrics.queue_depth.set_function(lambda: self._pending_events)

    async def submit(self, events: Sequence[R]) -> list[str]:
        """Store the events of one request; returns one outcome per event."""
        if self._pending_events + len(events) > self._queue_max:
            raise Unavailable("queue-full")
        submission = Submission(events)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((submission, future))
        self._pending_events += len(events)
        self._start_flushes()
        # No timer per request: each flush has its own time limit (`_flush`), so a
        # request waits at most for the flush in progress and then its own.
        await future
        assert submission.outcomes is not None
        return submission.outcomes

    def _start_flushes(self) -> None:
        # A flush takes everything pending when it runs, so one start per call suffices.
        # While one is in flight another starts only for OVERLAP_EVENTS or more: it
        # overlaps its transfer with the commit ahead of it, but a small batch would
        # pay a transaction's fixed cost for a few events that the next flush takes anyway.
        if not self._pending or self._active >= self._slots:
            return
        if self._active == 0 or self._pending_events >= OVERLAP_EVENTS:
            self._active += 1
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[Submission[R], asyncio.Future[None]]]:
        taken: list[tuple[Submission[R], asyncio.Future[None]]] = []
        count = 0
        while self._pending:
            size = len(self._pending[0][0].events)
            if taken and count + size > self._batch_max:
                break
            taken.append(self._pending.popleft())
            count += size
        self._pending_events -= count
        return taken

    async def _flush(self) -> None:
        try:
            taken = self._take()
            if not taken:
                return
            started = time.perf_counter()
            futures = {id(s): f for s, f in taken}
            try:
                async with asyncio.timeout(self._timeout), self._connections.use() as conn:
                    # One statement, committed by itself: no BEGIN/COMMIT round trips.
                    deferred, refused = await write_isolated(
                        conn, [s for s, _ in taken], self._write
                    )
            except TimeoutError:
                # The connection was dropped (HeldConnections: it may be stuck on a
                # silent network); whatever the server still commits, a retry finds as
                # a duplicate. Nothing here was acknowledged.
                log.warning("group commit took longer than %.1f s", self._timeout)
                self._fail(taken, "commit-timeout")
                return
            except DB_ERRORS as exc:
                log.warning("group commit failed: %s", db_error_text(exc))
                self._fail(taken, "database")
                return
            except Exception:
                log.exception("group commit failed")
                self._fail(taken, "internal")
                return
            for submission, sqlstate in refused:
                future = futures[id(submission)]
                if not future.done():
                    future.set_exception(Refused(sqlstate))
                    future.exception()  # retrieved, in case the request went away
            waiting = {id(s) for s in deferred} | {id(s) for s, _ in refused}
            # Back to the front of the queue: they go into the very next batch.
            for submission in reversed(deferred):
                self._pending.appendleft((submission, futures[id(submission)]))
                self._pending_events += len(submission.events)
            events = sum(len(s.events) for s, _ in taken if id(s) not in waiting)
            if self._observed:
                self._metrics.batch_size.observe(events)
                self._metrics.commit_seconds.observe(time.perf_counter() - started)
            for submission, future in taken:
                if id(submission) not in waiting and not future.done():
                    future.set_result(None)
        finally:
            self._active -= 1
            self._start_flushes()

    @staticmethod
    def _fail(taken: list[tuple[Submission[R], asyncio.Future[None]]], reason: str) -> None:
        for _, future in taken:
            if not future.done():
                future.set_exception(Unavailable(reason))
                # Mark retrieved: a request that went away no longer awaits it.
                future.exception()

    async def drain(self) -> None:
        """Wait for flushes in progress, then give the connections back (shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._connections.close()
