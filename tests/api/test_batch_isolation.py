"""One request's bad value never fails another's: a group commit that PostgreSQL refuses
for its data is bisected down to the request at fault (SQLSTATE classes 22 and 23).

Validation at the edge stops every bad value we know of, so the fault is injected in the
database itself: a CHECK constraint that refuses one `source`, added to a database of
this test's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from cmp.app import create_app
from cmp.audit.verify import verify_export
from cmp.config import Settings
from cmp.store.keys import ensure_root_key
from cmp.store.migrate import migrate
from tests.factories import ADMIN_KEY, ORIGIN, event, make_key, make_site

POISON = "poison/1.0"


@pytest.fixture
async def poisoned_client(aiohttp_client: Any, fresh_database: Any, tmp_path: Any) -> TestClient:
    dsn = await fresh_database()
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await ensure_root_key(conn, ADMIN_KEY)
        await conn.execute(
            "ALTER TABLE consent_events ADD CONSTRAINT test_poison"
            f" CHECK (source IS DISTINCT FROM '{POISON}') NOT VALID"
        )
    finally:
        await conn.close()
    settings = Settings(
        database_url=SecretStr(dsn),
        data_dir=tmp_path,
        admin_key=SecretStr(ADMIN_KEY),
        rate_per_second=10_000,
        rate_burst=10_000,
    )
    return await aiohttp_client(create_app(settings, dsn))  # type: ignore[no-any-return]


async def post(client: TestClient, site: str, body: Any) -> tuple[int, Any]:
    r = await client.post(f"/v1/sites/{site}/events", json=body, headers={"Origin": ORIGIN})
    return r.status, await r.json(content_type=None)


async def test_valid_events_commit_beside_poisoned_ones_in_the_same_batches(
    poisoned_client: TestClient,
) -> None:
    client = poisoned_client
    site_a, site_b = await make_site(client), await make_site(client)
    good = [event() for _ in range(120)]
    bad = [event(source=POISON) for _ in range(30)]
    # Interleaved and concurrent, so the group commit mixes both sites in its batches.
    calls, kinds = [], []
    for i, body in enumerate(good):
        calls.append(post(client, site_b, body))
        kinds.append("good")
        if i % 4 == 0:
            calls.append(post(client, site_a, {"events": [event(), bad[i // 4]]}))
            kinds.append("bad")
    results = await asyncio.gather(*calls)
    good_answers = [r for r, kind in zip(results, kinds, strict=True) if kind == "good"]
    bad_answers = [r for r, kind in zip(results, kinds, strict=True) if kind == "bad"]
    assert good_answers == [(201, {"accepted": 1, "duplicates": 0})] * len(good)
    assert [status for status, _ in bad_answers] == [422] * len(bad)
    assert all(body["type"].endswith("/unstorable") for _, body in bad_answers)

    # Nothing of a refused request was stored (a request is stored whole or not at all),
    # and both chains verify.
    for site, expected in ((site_b, len(good)), (site_a, 0)):
        audit = await make_key(client, site, "audit")
        r = await client.get(f"/v1/sites/{site}/events", headers=audit)
        lines = [line for line in (await r.text()).splitlines() if line]
        assert len(lines) == expected
        assert verify_export(lines).ok

    # The poisoned site is not stuck: a clean event goes through.
    assert (await post(client, site_a, event()))[0] == 201
