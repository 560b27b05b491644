"""Batched state reads: concurrent lookups share one database round trip.

Same natural batching as the group commit: a read starts when a slot is free and takes
every lookup waiting then. A lookup always starts after its request arrived, so a
state read sees every event whose POST was answered before — across processes too
(read-your-writes without a cache to invalidate).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from cmp.commit import Unavailable
from cmp.consent import StoredChoice
from cmp.metrics import Metrics
from cmp.store.db import DB_ERRORS_OR_TIMEOUT, HeldConnections, db_error_text
from cmp.store.events import Pair, Peers, select_states

log = logging.getLogger(__name__)

T = TypeVar("T")
# What one batched read found: the stored choices by pair, and the peers of each pair
# linked to a user now (cmp.store.events.select_states).
Found = tuple[dict[Pair, StoredChoice], dict[Pair, Peers]]


class StateReader:
    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        *,
        in_flight: int = 2,
        batch_max: int = 2000,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._connections = HeldConnections(pool)
        self._timeout = timeout_seconds
        self._metrics = metrics
        self._slots = in_flight
        self._batch_max = batch_max
        self._pending: deque[tuple[list[Pair], asyncio.Future[Found]]] = deque()
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def bounded(self, read: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """One more read on the held connections, under the same time limit as the
        batched ones (a read on a silent connection must not hold its request for the
        network's timeout; the connection is then discarded)."""
        async with asyncio.timeout(self._timeout), self._connections.use() as conn:
            return await read(conn)

    async def get(self, site_id: str, subject_ids: list[str]) -> dict[str, StoredChoice]:
        """Stored latest choice per subject id; absent ids have none."""
        return (await self.get_with_peers(site_id, subject_ids))[0]

    async def get_with_peers(
        self, site_id: str, subject_ids: list[str]
    ) -> tuple[dict[str, StoredChoice], dict[str, Peers]]:
        """`get`, and the peers of each subject linked to a user now, with their choices
        (read in the same statement, after the request arrived: a link acknowledged
        before it is seen)."""
        pairs = [(site_id, s) for s in subject_ids]
        future: asyncio.Future[Found] = asyncio.get_running_loop().create_future()
        self._pending.append((pairs, future))
        if self._active < self._slots:
            self._active += 1
            task = asyncio.create_task(self._read())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        found, linked = await future
        choices = {pair[1]: found[pair] for pair in pairs if pair in found}
        peers = {pair[1]: linked[pair] for pair in pairs if pair in linked}
        return choices, peers

    async def _read(self) -> None:
        try:
            while self._pending:
                taken: list[tuple[list[Pair], asyncio.Future[Found]]] = []
                count = 0
                while self._pending and (
                    not taken or count + len(self._pending[0][0]) <= self._batch_max
                ):
                    item = self._pending.popleft()
                    taken.append(item)
                    count += len(item[0])
                sites = [p[0] for pairs, _ in taken for p in pairs]
                subjects = [p[1] for pairs, _ in taken for p in pairs]
                try:
                    # Bounded: a read stuck on a silent connection must not hold every
                    # lookup behind it (the connection is then discarded).
                    async with asyncio.timeout(self._timeout), self._connections.use() as conn:
                        found = await select_states(conn, sites, subjects)
                except DB_ERRORS_OR_TIMEOUT as exc:
                    log.warning("state read failed: %s", db_error_text(exc))
                    self._fail(taken, "database")
                    continue
                except Exception:
                    # Never leave the lookups waiting: they would hang for good.
                    log.exception("state read failed")
                    self._fail(taken, "internal")
                    continue
                self._metrics.read_batch_size.observe(count)
                for _, future in taken:
                    if not future.done():
                        future.set_result(found)
        finally:
            self._active -= 1

    @staticmethod
    def _fail(taken: list[tuple[list[Pair], asyncio.Future[Found]]], reason: str) -> None:
        for _, future in taken:
            if not future.done():
                future.set_exception(Unavailable(reason))

    async def drain(self) -> None:
        """Wait for reads in progress, then give the connections back (shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._connections.close()
