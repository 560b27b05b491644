"""The share of database connections long reads may take (docs/api.md, Operations).

Exports, subject histories and statistics run at their client's pace or scan a lot; on
the shared pool, nine slow exports took every connection and ingest, admin calls and
/readyz waited behind them. Long reads get their own small pool instead — the group
committer, the state reader and every other caller never wait for it — and each site
at most `per_site` of it, so one tenant's exports leave room for the others'.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from cmp.store.db import PoolBusy, discard

# A long read takes seconds to minutes: a client refused for its site's cap should not
# come back at once.
SITE_BUSY_RETRY_AFTER = 10
# A server that does not answer `SELECT 1` this soon is not there.
PING_TIMEOUT = 2.0


class LongReads:
    def __init__(self, pool: asyncpg.Pool, *, per_site: int, wait: float) -> None:
        self.pool = pool
        self._per_site = per_site
        self._wait = wait
        # site id -> (its slots, how many hold or wait for one); gone when unused.
        self._sites: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def connection(self, site_id: str) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the long-read pool, counted against `site_id`'s cap.

        Waiting for a slot of the site, and then for the pool, are each bounded by
        `wait` seconds (then PoolBusy).
        """
        slots, users = self._sites.get(site_id) or (asyncio.Semaphore(self._per_site), 0)
        self._sites[site_id] = (slots, users + 1)
        try:
            try:
                async with asyncio.timeout(self._wait):
                    await slots.acquire()
            except TimeoutError:
                raise PoolBusy(
                    f"this site's {self._per_site} long reads (exports, histories, "
                    "statistics) are all in progress",
                    retry_after=SITE_BUSY_RETRY_AFTER,
                ) from None
            try:
                conn = await self._answering()
                try:
                    yield conn
                except asyncpg.PostgresError:
                    await self.pool.release(conn)  # the server answered: the pool checks it
                    raise
                except BaseException:
                    discard(conn)  # mid-COPY, cut off, or its server gone: not worth a wait
                    raise
                await self.pool.release(conn)
            finally:
                slots.release()
        finally:
            slots, users = self._sites[site_id]
            if users > 1:
                self._sites[site_id] = (slots, users - 1)
            else:
                del self._sites[site_id]

    async def _answering(self) -> asyncpg.Connection:
        """A pool connection that answers. Long reads are rare, so an idle one may have
        lost its server (a crash, a reset) since its last use: it is dropped and
        replaced, once, so the first export after a restart works."""
        for attempt in (1, 2):
            conn = await self.pool.acquire()
            try:
                await conn.execute("SELECT 1", timeout=PING_TIMEOUT)
            except asyncpg.PostgresError:
                await self.pool.release(conn)
                raise
            except Exception:
                discard(conn)
                if attempt == 2:
                    raise
                continue
            return conn
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self.pool.close()
