"""After a PostgreSQL crash and restart, the first request already works (issue 10, row 12).

The group commit and the state reader keep pool connections between batches
(`HeldConnections`). When the server dies those connections die with it; a held one
that is reused answers 503 `connection has been released back to the pool`, however
long after the restart it comes. Dead connections must be dropped instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import SecretStr

from cmp.app import create_app
from tests.factories import ORIGIN, event, make_key, make_site
from tests.own_postgres import OwnPostgres


async def test_the_first_read_and_write_after_a_crash_and_restart_succeed(
    own_postgres: OwnPostgres, aiohttp_client: Any, settings: Any
) -> None:
    dsn = await own_postgres.fresh_database()
    app = create_app(settings.model_copy(update={"database_url": SecretStr(dsn)}), dsn)
    client = await aiohttp_client(app)
    site = await make_site(client)
    read = await make_key(client, site, "read")
    first = event()
    state_url = f"/v1/sites/{site}/subjects/{first['subject_id']}/consent"
    # One write and one read, so both keep a connection between batches.
    r = await client.post(f"/v1/sites/{site}/events", json=first, headers={"Origin": ORIGIN})
    assert r.status == 201, await r.text()
    r = await client.get(state_url, headers=read)
    assert r.status == 200, await r.text()

    killed = await asyncio.to_thread(own_postgres.crash)
    assert killed >= 2  # the postmaster and at least the held backends
    await asyncio.to_thread(own_postgres.start)

    r = await client.get(state_url, headers=read)
    assert r.status == 200, await r.text()
    assert (await r.json())["event_id"] == first["event_id"]
    second = event()
    r = await client.post(f"/v1/sites/{site}/events", json=second, headers={"Origin": ORIGIN})
    assert r.status == 201, await r.text()
