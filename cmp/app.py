"""`create_app(settings, dsn)`: wires the application, nothing more.

Every shared object is a typed AppKey (cmp/appkeys.py); every resource with a lifetime
is a cleanup_ctx generator, opened in order and closed in reverse.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

from aiohttp import web

from cmp.api.httplog import SERVER_LOG
from cmp.api.routes import setup_routes
from cmp.appkeys import (
    CATALOG,
    COMMITTER,
    DSN,
    IMPRESSIONS,
    INGEST,
    LIMITER,
    LONG_READS,
    LOOKUP_SLOTS,
    METRICS,
    POOL,
    SETTINGS,
    SIGNER,
    STATE,
    TREE,
)
from cmp.audit.signing import Signer
from cmp.background import background
from cmp.catalog import Catalog
from cmp.commit import GroupCommitter
from cmp.config import Settings
from cmp.ingest import Ingest
from cmp.ingest.impressions import Impressions
from cmp.maintenance import record_key_use, run_periodically
from cmp.metrics import Metrics
from cmp.ratelimit import RateLimiter
from cmp.state import StateReader
from cmp.store.db import create_pool
from cmp.store.events import write_batch
from cmp.store.impressions import write_impressions
from cmp.store.longreads import LongReads
from cmp.treelog import TreeLog, run_integration

# Admin bodies (policy texts in several languages) may be large; the collect endpoints
# enforce their own 64 KiB limit.
CLIENT_MAX_SIZE = 1024 * 1024

# Batch lookups are CPU work for this one thread: running more than a few at once adds
# no throughput, only memory (each holds the states of up to 1000 subjects). The others
# wait their turn holding just their request body (without this bound, concurrent
# 100-id lookups pushed the RSS past its target: loadtest/README.md).
LOOKUPS_AT_ONCE = 4


def tune_gc() -> None:
    """Keep the cyclic GC off the hot path.

    Start-up leaves ~10^5 long-lived objects (pydantic schemas, aiohttp, asyncpg);
    freezing them keeps every full collection from walking them again, and a higher
    first threshold makes collections rarer: request garbage is acyclic and freed by
    reference counting anyway.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def create_app(settings: Settings, dsn: str) -> web.Application:
    """The application for `settings` on the database at `dsn`; its resources open on
    startup, in order, and close in reverse on cleanup (also after a failed start)."""
    # No middlewares: the request context wraps each handler (cmp/api/context.py).
    app = web.Application(
        client_max_size=CLIENT_MAX_SIZE,
        # Compressed request bodies are refused (415, cmp/api/validation.py), so aiohttp
        # must not inflate them first: a broken stream would fail outside any handler.
        handler_args={
            "auto_decompress": False,
            # Bounds the wait for a request's headers too (aiohttp closes a connection
            # whose next request has not arrived whole by then).
            "keepalive_timeout": settings.keepalive_timeout_seconds,
            # aiohttp's parser-error lines name the client's address: ours log its network.
            "logger": SERVER_LOG,
            # Its access log names it too (and halves throughput): off under any runner;
            # the request context logs instead.
            "access_log": None,
        },
    )
    app[SETTINGS] = settings
    app[DSN] = dsn
    app[METRICS] = Metrics()
    app[LIMITER] = RateLimiter(settings.rate_per_second, settings.rate_burst)
    app[SIGNER] = Signer.load_or_create(settings.signing_key_path)
    app[LOOKUP_SLOTS] = asyncio.Semaphore(LOOKUPS_AT_ONCE)

    for resource in (
        main_pool,
        long_read_pool,
        catalog,
        committer,
        state_reader,
        maintenance_job,
        tree_job,
        key_use_job,
    ):
        app.cleanup_ctx.append(resource)
    app.on_startup.append(settle)
    setup_routes(app)
    return app


# --- resources: one cleanup_ctx each, opening one thing and closing it -------------------


async def main_pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[POOL] = await create_pool(
        app[DSN],
        settings.pool_size,
        acquire_timeout=settings.acquire_timeout_seconds,
        statement_cache=settings.database_statement_cache,
    )
    yield
    await app[POOL].close()


async def long_read_pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(
        app[DSN],
        settings.long_read_pool_size,
        acquire_timeout=settings.acquire_timeout_seconds,
        name="cmp-long-read",
        reset=True,  # an aborted export gives its connection back mid-read
        statement_cache=settings.database_statement_cache,
    )
    app[LONG_READS] = LongReads(
        pool, per_site=settings.long_reads_per_site, wait=settings.acquire_timeout_seconds
    )
    yield
    await app[LONG_READS].close()


async def catalog(app: web.Application) -> AsyncIterator[None]:
    # LISTEN needs a session: the direct URL when the pool goes through a pooler.
    app[CATALOG] = Catalog(app[POOL], app[SETTINGS].session_dsn(app[DSN]))
    await app[CATALOG].listen()
    yield
    await app[CATALOG].close()


async def committer(app: web.Application) -> AsyncIterator[None]:
    """The group committer, and the pipeline that feeds it (nothing of its own to close)."""
    settings = app[SETTINGS]
    app[COMMITTER] = GroupCommitter(
        app[POOL],
        app[METRICS],
        write_batch,
        batch_max=settings.batch_max,
        in_flight=settings.flushes_in_flight,
        queue_max=settings.queue_max,
        timeout_seconds=settings.commit_timeout_seconds,
    )
    app[INGEST] = Ingest(app[CATALOG], app[LIMITER], app[COMMITTER])
    # Impressions: their own queue and rate buckets, so that the showings of visitors
    # who never decide neither delay nor limit the decisions.
    counter = GroupCommitter(
        app[POOL],
        app[METRICS],
        write_impressions,
        batch_max=settings.batch_max,
        in_flight=settings.flushes_in_flight,
        queue_max=settings.queue_max,
        timeout_seconds=settings.commit_timeout_seconds,
        observed=False,
    )
    limiter = RateLimiter(settings.rate_per_second, settings.rate_burst)
    app[IMPRESSIONS] = Impressions(app[CATALOG], limiter, counter)
    yield
    await app[COMMITTER].drain()
    await counter.drain()


async def state_reader(app: web.Application) -> AsyncIterator[None]:
    app[STATE] = StateReader(
        app[POOL], app[METRICS], timeout_seconds=app[SETTINGS].commit_timeout_seconds
    )
    yield
    await app[STATE].drain()


async def maintenance_job(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    job = run_periodically(
        app[POOL],
        app[SIGNER],
        checkpoint_every=settings.checkpoint_interval_seconds,
        purge_every=settings.purge_interval_seconds,
    )
    async with background(job, "cmp-maintenance"):
        yield


async def tree_job(app: web.Application) -> AsyncIterator[None]:
    """The transparency log: its reader for the API and its integration job."""
    settings = app[SETTINGS]
    app[TREE] = TreeLog(app[POOL], app[SIGNER], settings.public_host)
    app[METRICS].integration_target.set(settings.log_integration_seconds)
    job = run_integration(
        app[POOL],
        app[SIGNER],
        settings.public_host,
        every=settings.log_integration_seconds,
        observe=app[METRICS].integration_delay.observe,
    )
    async with background(job, "cmp-tree-integration"):
        yield


async def key_use_job(app: web.Application) -> AsyncIterator[None]:
    every = app[SETTINGS].checkpoint_interval_seconds
    async with background(record_key_use(app[POOL], app[CATALOG], every=every), "cmp-key-use"):
        yield


async def settle(app: web.Application) -> None:
    """After every resource is open: what start-up left behind is long-lived."""
    tune_gc()
