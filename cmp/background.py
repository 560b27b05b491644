"""Background tasks that end when the app stops: none left pending, none lost.

A job is cancelled and then waited for. Cancelling may land in a job's own clean-up
(a ROLLBACK on a connection that went dead in a network fault waits for the statement
time-out): so it is cancelled again, a second apart, a few times, before it is given
up with an error in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Final

log = logging.getLogger(__name__)

GRACE_SECONDS: Final = 1.0
CANCELS: Final = 5


async def stop(task: asyncio.Task[Any], name: str) -> None:
    """Cancel `task` until it has ended (each cancel gets GRACE_SECONDS), then report
    how it ended: a failure it had before is logged, not raised into shutdown."""
    for _ in range(CANCELS):
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=GRACE_SECONDS)
        if done:
            break
    else:
        log.error("background task %s did not end after %d cancellations", name, CANCELS)
        return
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s had failed", name, exc_info=task.exception())


@contextlib.asynccontextmanager
async def background(job: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run `job` as a task while the block runs; stop it when the block ends."""
    task = asyncio.create_task(job, name=name)
    try:
        yield
    finally:
        await stop(task, name)
