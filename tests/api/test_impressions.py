"""Impressions (docs/api.md): counted once per id, crawlers not counted, bad input 4xx,
raw days rolled up and dropped; through real HTTP against real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from cmp.app import create_app
from cmp.config import Settings
from cmp.store import impressions as store
from cmp.store.keys import ensure_root_key
from cmp.store.migrate import migrate
from cmp.timerange import format_instant
from tests.factories import (
    ADMIN_KEY,
    BROWSER,
    GOOGLEBOT,
    ORIGIN,
    make_key,
    make_site,
    stats_link,
)

HDR = {"Origin": ORIGIN, "User-Agent": BROWSER}


def shown(subject_id: str = "s-1", **fields: Any) -> dict[str, Any]:
    return {
        "impression_id": str(uuid.uuid4()),
        "subject_id": subject_id,
        "policy_version": 1,
        "surface": "banner",
        **fields,
    }


async def post(
    client: TestClient, site_id: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    r = await client.post(
        f"/v1/sites/{site_id}/impressions", json=body, headers=HDR if headers is None else headers
    )
    return r.status, await r.json(content_type=None)


async def counted(db: asyncpg.Connection, site_id: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM impressions WHERE site_id = $1", site_id))


@pytest.fixture
async def site(client: TestClient) -> str:
    return await make_site(client)


async def test_one_and_a_batch_are_counted(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    assert await post(client, site, shown()) == (202, {"counted": 1, "duplicates": 0, "ignored": 0})
    batch = {"impressions": [shown(f"s-{i}") for i in range(100)]}
    assert await post(client, site, batch) == (
        202,
        {"counted": 100, "duplicates": 0, "ignored": 0},
    )
    assert await counted(db, site) == 101


async def test_the_same_impression_id_ten_times_counts_once(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    body = shown()
    answers = [await post(client, site, body) for _ in range(5)]
    answers += await asyncio.gather(*(post(client, site, body) for _ in range(5)))
    assert await counted(db, site) == 1
    assert sum(a[1]["counted"] for a in answers) == 1
    assert all(status == 202 for status, _ in answers)


async def test_a_retry_the_next_day_counts_once(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    body = shown()
    assert (await post(client, site, body))[1]["counted"] == 1
    # The row as if it had come yesterday (its day's partition made as the insert would).
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    await db.execute("SELECT cmp_impression_partition($1)", yesterday)
    await db.execute(
        "WITH moved AS (DELETE FROM impressions WHERE site_id = $1 RETURNING *)"
        " INSERT INTO impressions SELECT site_id, $2, impression_id, visitor, policy_version,"
        " surface, variant, received_at - interval '1 day' FROM moved",
        site,
        yesterday,
    )
    assert await post(client, site, body) == (202, {"counted": 0, "duplicates": 1, "ignored": 0})
    assert await counted(db, site) == 1


async def test_a_crawler_is_answered_but_not_counted(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    status, body = await post(client, site, shown(), {"Origin": ORIGIN, "User-Agent": GOOGLEBOT})
    assert (status, body) == (202, {"counted": 0, "duplicates": 0, "ignored": 1})
    assert await counted(db, site) == 0


async def test_text_plain_is_accepted_and_cors_answered(client: TestClient, site: str) -> None:
    r = await client.post(
        f"/v1/sites/{site}/impressions",
        data=json.dumps(shown()),
        headers={**HDR, "Content-Type": "text/plain;charset=UTF-8"},
    )
    assert r.status == 202 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    pre = await client.options(
        f"/v1/sites/{site}/impressions",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == ORIGIN


@pytest.mark.parametrize(
    ("body", "status", "pointer"),
    [
        (b"", 400, None),
        (b"{not json", 400, None),
        (b"[]", 422, None),
        (json.dumps(shown(surface="popup")).encode(), 422, "/surface"),
        (json.dumps(shown(impression_id="nope")).encode(), 422, "/impression_id"),
        (json.dumps(shown(subject_id="a b")).encode(), 422, "/subject_id"),
        (json.dumps(shown(policy_version=0)).encode(), 422, "/policy_version"),
        (json.dumps(shown(policy_version=True)).encode(), 422, "/policy_version"),
        (json.dumps(shown(policy_version=7)).encode(), 422, "/policy_version"),
        (json.dumps(shown(variant="B\u0000")).encode(), 422, "/variant"),
        (json.dumps(shown(extra=1)).encode(), 422, "/extra"),
        (json.dumps({"impressions": []}).encode(), 422, "/impressions"),
        (json.dumps({"impressions": [shown()] * 101}).encode(), 422, "/impressions"),
        (json.dumps({"impressions": [shown(), {"x": 1}]}).encode(), 422, "/impressions/1/x"),
        (b'{"impressions": [' + b",".join([b'{"a":1}'] * 2000) + b"]}", 422, "/impressions"),
        (b"\xff\xfe", 400, None),
    ],
)
async def test_bad_input_is_4xx_with_pointers(
    client: TestClient,
    site: str,
    db: asyncpg.Connection,
    body: bytes,
    status: int,
    pointer: str | None,
) -> None:
    r = await client.post(
        f"/v1/sites/{site}/impressions",
        data=body,
        headers={**HDR, "Content-Type": "application/json"},
    )
    answer = await r.json(content_type=None)
    assert r.status == status, answer
    if pointer is not None:
        assert any(e["pointer"].startswith(pointer) for e in answer["errors"]), answer
        assert len(answer["errors"]) <= 20
    assert await counted(db, site) == 0


async def test_body_limits_and_content_type(client: TestClient, site: str) -> None:
    url = f"/v1/sites/{site}/impressions"
    r = await client.post(
        url, data=b"{" + b" " * 70_000 + b"}", headers={**HDR, "Content-Type": "application/json"}
    )
    assert r.status == 413
    r = await client.post(
        url, data=json.dumps(shown()), headers={**HDR, "Content-Type": "application/xml"}
    )
    assert r.status == 415


async def test_origin_not_allowed_is_403_and_no_origin_needs_a_key(
    client: TestClient, site: str
) -> None:
    assert (await post(client, site, shown(), {"Origin": "https://evil.example"}))[0] == 403
    assert (await post(client, site, shown(), {"User-Agent": BROWSER}))[0] == 401
    assert (await post(client, "t-nosuchsite", shown()))[0] == 404


async def test_rate_limit_is_429_with_retry_after(
    aiohttp_client: Any, settings: Any, db_dsn: str
) -> None:
    from cmp.app import create_app

    strict = settings.model_copy(update={"rate_per_second": 1.0, "rate_burst": 3})
    client = await aiohttp_client(create_app(strict, db_dsn))
    site = await make_site(client)
    statuses = []
    for _ in range(5):
        r = await client.post(f"/v1/sites/{site}/impressions", json=shown(), headers=HDR)
        statuses.append(r.status)
        if r.status == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert statuses[:3] == [202, 202, 202] and 429 in statuses[3:]
    # The events' buckets are their own: a visitor's decision still goes through.
    from tests.factories import event

    r = await client.post(f"/v1/sites/{site}/events", json=event(), headers=HDR)
    assert r.status == 201


@pytest.fixture
async def own(
    aiohttp_client: Any, fresh_database: Any, tmp_path: Path
) -> AsyncIterator[tuple[TestClient, asyncpg.Connection]]:
    """An app on a database of its own: rolling up today and dropping its raw partition
    would take the shared database's impressions from every later test."""
    dsn = await fresh_database()
    conn = await asyncpg.connect(dsn)
    await migrate(conn)
    await ensure_root_key(conn, ADMIN_KEY)
    settings = Settings(
        database_url=SecretStr(dsn),
        data_dir=tmp_path,
        admin_key=SecretStr(ADMIN_KEY),
        rate_per_second=1000,
        rate_burst=1000,
    )
    client = await aiohttp_client(create_app(settings, dsn))
    yield client, conn
    await conn.close()


async def test_closed_days_are_rolled_up_and_their_raw_rows_dropped(
    own: tuple[TestClient, asyncpg.Connection],
) -> None:
    client, db = own
    site = await make_site(client)
    for subject in ("a", "a", "b"):
        await post(client, site, shown(subject))
    await post(client, site, shown("a", surface="settings"))
    today = datetime.now(UTC).date()
    live = await store.select_impression_days(db, site, today, today + timedelta(days=1))
    totals = {(d.rule, d.variant, d.surface): (d.impressions, d.visitors) for d in live}
    # The site has no rules: everyone is under the one default rule.
    assert totals == {
        ("default", "", ""): (4, 2),
        ("default", "", "banner"): (3, 2),
        ("default", "", "settings"): (1, 1),
        ("default", "*", ""): (4, 2),
        ("*", "", ""): (4, 2),
        ("*", "*", ""): (4, 2),
    }
    # Three days on, the day is closed: rolled up once, then its raw partition dropped.
    later = datetime.now(UTC) + timedelta(days=3)
    assert today in await store.roll_up(db, now=later)
    assert await store.roll_up(db, now=later) == []
    part = f"impressions_{today:%Y%m%d}"
    assert await db.fetchval("SELECT to_regclass($1)", part) is None
    kept = await store.select_impression_days(db, site, today, today + timedelta(days=1))
    assert {(d.rule, d.variant, d.surface): (d.impressions, d.visitors) for d in kept} == totals


async def test_partitions_are_made_ahead(db: asyncpg.Connection) -> None:
    await store.make_partitions_ahead(db, 2)
    ahead = date.today() + timedelta(days=2)
    assert await db.fetchval("SELECT to_regclass($1)", f"impressions_{ahead:%Y%m%d}") is not None


async def test_the_stats_say_as_of_when_a_day_is_provisional(
    own: tuple[TestClient, asyncpg.Connection],
) -> None:
    client, db = own
    big, small = await make_site(client), await make_site(client)
    await post(client, big, {"impressions": [shown(f"s-{i}") for i in range(40)]})
    await post(client, small, shown())
    await db.execute("ANALYZE")  # the statistics the refresh's candidates come from
    assert await store.refresh_provisional(db, threshold=30) == 1
    as_of = await db.fetchval("SELECT max(as_of) FROM impression_provisional")
    await post(client, big, shown("s-late"))  # not in the counts until the next refresh
    doc = await (await client.get("/openapi.json")).json()
    answer = doc["paths"]["/v1/sites/{site_id}/stats"]["get"]["responses"]["200"]
    tally = answer["content"]["application/json"]["schema"]["properties"]["totals"]
    for site, impressions, when in ((big, 40, as_of), (small, 1, None)):
        audit = await make_key(client, site, "audit")
        r = await client.get(f"/v1/sites/{site}/stats", headers=audit)
        body = await r.json()
        assert r.status == 200, body
        (bucket,) = body["buckets"]
        assert bucket["funnel"]["impressions"] == body["totals"]["funnel"]["impressions"]
        assert bucket["funnel"]["impressions"] == impressions
        expected = format_instant(when) if when else None
        assert bucket.get("as_of") == body["totals"].get("as_of") == expected
        assert set(bucket) <= set(tally["properties"]) and set(body["totals"]) <= set(
            tally["properties"]
        )
        page = await client.get(await stats_link(client, site))
        note = f"as of {when.astimezone(UTC):%H:%M} UTC" if when else "as of"
        text = (await page.text()).replace("\u00a0", " ")  # the note does not break
        assert (note in text) is (when is not None)
