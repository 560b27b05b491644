"""The server's maintenance loop (cmp.maintenance.run_periodically) run for a test's block,
and a wait for what it should bring about: one home for both store tests that drive it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from cmp.audit.signing import Signer
from cmp.maintenance import run_periodically

T = TypeVar("T")
EVERY_S = 0.05
TRIES = 600  # 30 s at EVERY_S: generous for a loaded machine


@contextlib.asynccontextmanager
async def maintenance_running(dsn: str, **options: Any) -> AsyncIterator[None]:
    """The loop against `dsn`, every EVERY_S, for as long as the block runs."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    job = asyncio.create_task(
        run_periodically(
            pool, Signer.generate(), checkpoint_every=EVERY_S, purge_every=3600, **options
        )
    )
    try:
        yield
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        await pool.close()


async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """The first truthy answer of `check`, asked every EVERY_S; fails saying `what` did not
    happen."""
    for _ in range(TRIES):
        found = await check()
        if found:
            return found
        await asyncio.sleep(EVERY_S)
    raise AssertionError(f"the maintenance loop {what}")
