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
from cmp.catalog import Catalog
from cmp.commit import GroupCommitter
from cmp.config import Settings
from cmp.ingest import Ingest
from cmp.maintenance import record_key_use, run_periodically
from cmp.metrics import Metrics
from cmp.ratelimit import RateLimiter
from cmp.state import StateReader
from cmp.store.db import create_pool
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
    app[METRICS] = Metrics()
    app[LIMITER] = RateLimiter(settings.rate_per_second, settings.rate_burst)
    app[SIGNER] = Signer.load_or_create(settings.signing_key_path)
    app[LOOKUP_SLOTS] = asyncio.Semaphore(LOOKUPS_AT_ONCE)

    async def database(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(
            dsn,
            settings.pool_size,
            acquire_timeout=settings.acquire_timeout_seconds,
            statement_cache=settings.database_statement_cache,
        )
        app[POOL] = pool
        long_reads = LongReads(
            await create_pool(
                dsn,
                settings.long_read_pool_size,
                acquire_timeout=settings.acquire_timeout_seconds,
                name="cmp-long-read",
                reset=True,  # an aborted export gives its connection back mid-read
                statement_cache=settings.database_statement_cache,
            ),
            per_site=settings.long_reads_per_site,
            wait=settings.acquire_timeout_seconds,
        )
        app[LONG_READS] = long_reads
        # LISTEN needs a session: the direct URL when the pool goes through a pooler.
        app[CATALOG] = Catalog(pool, settings.session_dsn(dsn))
        await app[CATALOG].listen()
        app[COMMITTER] = GroupCommitter(
            pool,
            app[METRICS],
            batch_max=settings.batch_max,
            in_flight=settings.flushes_in_flight,
            queue_max=settings.queue_max,
            timeout_seconds=settings.commit_timeout_seconds,
        )
        app[STATE] = StateReader(
            pool, app[METRICS], timeout_seconds=settings.commit_timeout_seconds
        )
        app[INGEST] = Ingest(app[CATALOG], app[LIMITER], app[COMMITTER])
        maintenance = asyncio.create_task(
            run_periodically(
                pool,
                app[SIGNER],
                checkpoint_every=settings.checkpoint_interval_seconds,
                purge_every=settings.purge_interval_seconds,
            )
        )
        app[TREE] = TreeLog(pool, app[SIGNER], settings.public_host)
        app[METRICS].integration_target.set(settings.log_integration_seconds)
        integration = asyncio.create_task(
            run_integration(
                pool,
                app[SIGNER],
                settings.public_host,
                every=settings.log_integration_seconds,
                observe=app[METRICS].integration_delay.observe,
            )
        )
        key_use = asyncio.create_task(
            record_key_use(pool, app[CATALOG], every=settings.checkpoint_interval_seconds)
        )
        tune_gc()
        yield
        key_use.cancel()
        integration.cancel()
        maintenance.cancel()
        await app[COMMITTER].drain()
        await app[STATE].drain()
        await app[CATALOG].close()
        await long_reads.close()
        await pool.close()

    app.cleanup_ctx.append(database)
    setup_routes(app)
    return app
