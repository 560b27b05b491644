"""Back-pressure: the database goes away mid-test and comes back.

Uses its own embedded PostgreSQL (tests/own_postgres.py, not the shared test server)
so stopping it harms no other test. While it is down, ingest answers 503 with
Retry-After — quickly, never a hang; once it is back, the service recovers by itself;
every event that got a 2xx is stored, exactly once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import SecretStr

from cmp.app import create_app
from cmp.store.db import connect
from tests.factories import ADMIN, ORIGIN, event, make_site
from tests.own_postgres import OwnPostgres


async def test_database_outage_gives_503_then_recovers_and_loses_nothing(
    own_postgres: OwnPostgres, aiohttp_client: Any, settings: Any
) -> None:
    dsn = await own_postgres.fresh_database()
    app = create_app(settings.model_copy(update={"database_url": SecretStr(dsn)}), dsn)
    client = await aiohttp_client(app)
    site = await make_site(client)
    acknowledged: list[str] = []

    async def send() -> int:
        body = event()
        r = await client.post(f"/v1/sites/{site}/events", json=body, headers={"Origin": ORIGIN})
        if r.status == 201:
            acknowledged.append(body["event_id"])
        elif r.status == 503:
            assert int(r.headers["Retry-After"]) >= 1
        return r.status

    assert {await send() for _ in range(5)} == {201}
    # Keep sending while the database stops under the load.
    sender = asyncio.gather(*(send() for _ in range(50)))
    await asyncio.to_thread(own_postgres.stop)
    before_outage = await sender
    assert set(before_outage) <= {201, 503}
    started = time.monotonic()
    during = [await send() for _ in range(5)]
    assert during == [503] * 5
    assert time.monotonic() - started < 5, "503 must come quickly, not after a hang"
    await asyncio.to_thread(own_postgres.start)
    deadline = time.monotonic() + 20
    while await send() != 201:
        assert time.monotonic() < deadline, "service did not recover"
        await asyncio.sleep(0.2)
    assert {await send() for _ in range(5)} == {201}
    # Policy/site reads work again too (caches were dropped and the listener came back).
    r = await client.get(f"/v1/sites/{site}", headers=ADMIN)
    assert r.status == 200
    conn = await connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT event_id::text FROM consent_events WHERE site_id = $1", site
        )
        stored = [r["event_id"] for r in rows]
    finally:
        await conn.close()
    assert set(acknowledged) <= set(stored), "an acknowledged event was lost"
    assert len(stored) == len(set(stored))


async def test_a_stuck_commit_times_out_with_503_and_a_retry_is_stored_once(
    aiohttp_client: Any, settings: Any, db: Any, db_dsn: str
) -> None:
    app = create_app(settings.model_copy(update={"commit_timeout_seconds": 0.5}), db_dsn)
    client = await aiohttp_client(app)
    site = await make_site(client)
    url = f"/v1/sites/{site}/events"
    r = await client.post(url, json=event(), headers={"Origin": ORIGIN})
    assert r.status == 201  # the site's chain head exists now
    body = event()
    # Another transaction holds the chain head: the group commit waits on the lock.
    async with db.transaction():
        await db.execute("SELECT 1 FROM log_heads WHERE site_id = $1 FOR UPDATE", site)
        started = time.monotonic()
        r = await client.post(url, json=body, headers={"Origin": ORIGIN})
        assert r.status == 503
        assert r.headers["Retry-After"] == "1"
        assert (await r.json())["type"].endswith("/unavailable")
        assert time.monotonic() - started < 3
    r = await client.post(url, json=body, headers={"Origin": ORIGIN})
    assert r.status == 201
    count = await db.fetchval(
        "SELECT count(*) FROM consent_events WHERE site_id = $1 AND event_id = $2::uuid",
        site,
        body["event_id"],
    )
    assert count == 1


async def test_the_smallest_pool_serves_writes_reads_and_admin_together(
    aiohttp_client: Any, settings: Any, db_dsn: str
) -> None:
    """The group commit and the state reads keep pool connections between batches;
    with a pool of two they must still leave room for each other and for the admin and
    audit requests (which take a connection per request)."""
    app = create_app(settings.model_copy(update={"pool_size": 2}), db_dsn)
    client = await aiohttp_client(app)
    site = await make_site(client)
    r = await client.post(f"/v1/sites/{site}/keys", json={"scope": "read"}, headers=ADMIN)
    read = {"Authorization": f"Bearer {(await r.json())['key']}"}
    r = await client.post(f"/v1/sites/{site}/keys", json={"scope": "audit"}, headers=ADMIN)
    audit = {"Authorization": f"Bearer {(await r.json())['key']}"}

    async def write() -> int:
        r = await client.post(f"/v1/sites/{site}/events", json=event(), headers={"Origin": ORIGIN})
        return r.status

    async def lookup() -> int:
        r = await client.post(
            f"/v1/sites/{site}/consent/lookup",
            json={"subject_ids": [f"s-{i}" for i in range(50)]},
            headers=read,
        )
        return r.status

    async def export() -> int:
        r = await client.get(f"/v1/sites/{site}/events", headers=audit)
        await r.read()
        return r.status

    for _ in range(3):
        work = [write() for _ in range(20)] + [lookup() for _ in range(20)]
        work += [export() for _ in range(3)]
        statuses = await asyncio.wait_for(asyncio.gather(*work), timeout=20)
        assert set(statuses) <= {200, 201}, statuses
