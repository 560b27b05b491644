"""Faults under concurrent ingest load (issue 10, I.3): nothing acknowledged is lost.

Each scenario runs dozens of concurrent posters (and a few state readers) against
several sites of an app whose database is a PostgreSQL of the test's own
(tests/own_postgres.py), then:

(a) kills PostgreSQL (postmaster and backends) with SIGKILL and restarts it, cycle
    after cycle;
(b) puts an in-process TCP proxy between the app and PostgreSQL that pauses, resets
    and blackholes connections (tests/faults/proxy.py);
(c) holds `LOCK TABLE log_heads` from a side session for longer than the commit
    timeout.

During a fault a post gets 201 or 503 with Retry-After, nothing else. After it, every
event that got a 201 is in the site's export exactly once, each site's chain verifies
(`cmpd verify`'s code), and the same server answers 201 again. Each scenario prints
its counts (`[faults] ...`) for the CI log.

`make test` runs the short profile; `make test-faults` the long one (marker
`faults_long`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from cmp.app import create_app
from tests.faults.load import Load, check_exports, make_sites
from tests.faults.proxy import FaultProxy
from tests.own_postgres import OwnPostgres

COMMIT_TIMEOUT = 1.0


@dataclass(frozen=True)
class Profile:
    name: str
    sites: int
    posters: int
    readers: int
    kills: int  # SIGKILL cycles
    rounds: int  # proxy and lock rounds
    between: float  # seconds of plain load between faults


SHORT = Profile("short", sites=3, posters=30, readers=3, kills=5, rounds=1, between=0.5)
LONG = Profile("long", sites=4, posters=60, readers=6, kills=20, rounds=5, between=3.0)
PROFILES = [
    pytest.param(SHORT, id="short"),
    pytest.param(LONG, id="long", marks=[pytest.mark.faults_long, pytest.mark.timeout(1800)]),
]


async def start_app(aiohttp_client: Any, settings: Any, dsn: str) -> TestClient:
    changed = settings.model_copy(
        update={
            "database_url": SecretStr(dsn),
            "commit_timeout_seconds": COMMIT_TIMEOUT,
            # The load comes from one address: no rate limit in the way.
            "rate_per_second": 1e9,
            "rate_burst": 1_000_000_000,
        }
    )
    client: TestClient = await aiohttp_client(create_app(changed, dsn))
    return client


@pytest.fixture
async def proxy(own_postgres: OwnPostgres) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(own_postgres.socket_path)
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.mark.parametrize("profile", PROFILES)
async def test_postgres_killed_and_restarted_under_load(
    profile: Profile,
    own_postgres: OwnPostgres,
    aiohttp_client: Any,
    settings: Any,
    report: Callable[[str], None],
) -> None:
    client = await start_app(aiohttp_client, settings, await own_postgres.fresh_database())
    load = Load(client, await make_sites(client, profile.sites), profile.posters, profile.readers)
    load.start()
    try:
        recoveries = []
        for _ in range(profile.kills):
            await load.wait_acked(profile.posters)
            await asyncio.sleep(profile.between)
            await asyncio.to_thread(own_postgres.crash)
            await asyncio.sleep(0.3)  # down for a moment: posts meanwhile get 503
            await asyncio.to_thread(own_postgres.start)
            recoveries.append(await load.wait_recovered(time.monotonic()))
        await load.wait_acked(profile.posters)
    finally:
        await load.stop()
    await check_exports(client, load, f"{profile.name} SIGKILL x{profile.kills}", report)
    report(f"slowest recovery after a restart: {max(recoveries):.2f} s")


@pytest.mark.parametrize("profile", PROFILES)
async def test_a_proxy_that_pauses_resets_and_blackholes(
    profile: Profile,
    own_postgres: OwnPostgres,
    proxy: FaultProxy,
    aiohttp_client: Any,
    settings: Any,
    report: Callable[[str], None],
) -> None:
    dsn = proxy.dsn(await own_postgres.fresh_database())
    client = await start_app(aiohttp_client, settings, dsn)
    load = Load(client, await make_sites(client, profile.sites), profile.posters, profile.readers)
    load.start()
    recoveries: dict[str, float] = {}

    async def after(kind: str) -> None:
        took = await load.wait_recovered(time.monotonic())
        recoveries[kind] = max(recoveries.get(kind, 0.0), took)
        await load.wait_acked(profile.posters)
        await asyncio.sleep(profile.between)

    try:
        await load.wait_acked(profile.posters)
        for _ in range(profile.rounds):
            # Longer than the commit timeout: flushes in progress must give up.
            proxy.pause()
            await asyncio.sleep(2.5 * COMMIT_TIMEOUT)
            proxy.resume()
            await after("pause")

            proxy.reset()
            await asyncio.sleep(0.2)
            proxy.reset()
            await after("reset")

            proxy.blackhole()
            closed = proxy.dead_closed_by_app
            await asyncio.sleep(2.5 * COMMIT_TIMEOUT)
            # Flushes stuck in the blackhole timed out and dropped their connection.
            assert proxy.dead_closed_by_app > closed
            proxy.heal()
            await after("blackhole")
    finally:
        await load.stop()
    await check_exports(client, load, f"{profile.name} proxy x{profile.rounds}", report)
    report(
        "slowest recovery: "
        + " ".join(f"{k}={v:.2f}s" for k, v in recoveries.items())
        + f"; proxy connections opened: {proxy.connections},"
        + f" blackholed ones the app dropped: {proxy.dead_closed_by_app}"
    )


@pytest.mark.parametrize("profile", PROFILES)
async def test_log_heads_locked_longer_than_the_commit_timeout(
    profile: Profile,
    own_postgres: OwnPostgres,
    aiohttp_client: Any,
    settings: Any,
    report: Callable[[str], None],
) -> None:
    dsn = await own_postgres.fresh_database()
    client = await start_app(aiohttp_client, settings, dsn)
    load = Load(client, await make_sites(client, profile.sites), profile.posters, profile.readers)
    load.start()
    side = await asyncpg.connect(dsn)
    try:
        for _ in range(profile.rounds):
            await load.wait_acked(profile.posters)
            async with side.transaction():
                await side.execute("LOCK TABLE log_heads")
                before = load.statuses["post 503"]
                await asyncio.sleep(2.5 * COMMIT_TIMEOUT)
                assert load.statuses["post 503"] > before, "the lock did not hold the commits"
            await load.wait_recovered(time.monotonic())
            await asyncio.sleep(profile.between)
    finally:
        await side.close()
        await load.stop()
    await check_exports(client, load, f"{profile.name} LOCK log_heads x{profile.rounds}", report)
