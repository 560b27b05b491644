"""Ingest (docs/api.md, Collect): a test per rule, through real HTTP against real PostgreSQL."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from cmp.api import collect
from cmp.ingest.facts import ip_prefix
from tests.factories import (
    ADMIN,
    ORIGIN,
    event,
    make_key,
    make_site,
    new_site_id,
    policy_body,
    site_body,
)

HDR = {"Origin": ORIGIN}


async def post(
    client: TestClient, site_id: str, body: Any, headers: dict[str, str] | None = None, **kw: Any
) -> tuple[int, Any]:
    r = await client.post(
        f"/v1/sites/{site_id}/events", json=body, headers=HDR if headers is None else headers, **kw
    )
    return r.status, await r.json(content_type=None)


async def stored(db: asyncpg.Connection, site_id: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM consent_events WHERE site_id = $1 ORDER BY seq", site_id)


@pytest.fixture
async def site(client: TestClient) -> str:
    return await make_site(client)


async def test_single_event_and_batch_are_accepted(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    assert await post(client, site, event()) == (201, {"accepted": 1, "duplicates": 0})
    batch = {"events": [event() for _ in range(100)]}
    assert await post(client, site, batch) == (201, {"accepted": 100, "duplicates": 0})
    rows = await stored(db, site)
    assert [r["seq"] for r in rows] == list(range(1, 102))


async def test_batch_over_100_is_422(client: TestClient, site: str) -> None:
    status, body = await post(client, site, {"events": [event() for _ in range(101)]})
    assert status == 422 and body["errors"][0]["pointer"] == "/events"


async def test_text_plain_beacon_body_is_accepted(client: TestClient, site: str) -> None:
    r = await client.post(
        f"/v1/sites/{site}/events",
        data=json.dumps(event()),
        headers={**HDR, "Content-Type": "text/plain;charset=UTF-8"},
    )
    assert r.status == 201


async def test_other_content_type_is_415(client: TestClient, site: str) -> None:
    r = await client.post(
        f"/v1/sites/{site}/events",
        data=json.dumps(event()),
        headers={**HDR, "Content-Type": "application/xml"},
    )
    assert r.status == 415


async def test_body_over_64_kib_is_413(client: TestClient, site: str) -> None:
    big = event(source="x" * 10)
    big["page_url"] = "https://shop.example/" + "a" * (70 * 1024)
    status, body = await post(client, site, big)
    assert status == 413 and body["status"] == 413


async def test_malformed_json_is_400(client: TestClient, site: str) -> None:
    r = await client.post(
        f"/v1/sites/{site}/events",
        data=b'{"event_id": ',
        headers={**HDR, "Content-Type": "application/json"},
    )
    assert r.status == 400


async def test_one_bad_event_rejects_the_whole_request(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    bad = event(purposes={"foo": True}, action="custom")
    status, body = await post(client, site, {"events": [event(), bad]})
    assert status == 422
    pointers = [e["pointer"] for e in body["errors"]]
    assert "/events/1/purposes/foo" in pointers
    assert await stored(db, site) == []


@pytest.mark.parametrize(
    ("fields", "pointer"),
    [
        ({"action": "custom", "purposes": {"statistics": True}}, "/purposes/preferences"),
        ({"action": "custom"}, "/purposes"),
        ({"action": "accept_all", "purposes": {"marketing": False}}, "/purposes/marketing"),
        ({"action": "reject_all", "purposes": {"statistics": True}}, "/purposes/statistics"),
        ({"action": "withdraw", "purposes": {"marketing": True}}, "/purposes/marketing"),
        ({"action": "accept_all", "purposes": {"necessary": False}}, "/purposes/necessary"),
        (
            {"action": "reject_all", "services": {"google-analytics": True}},
            "/services/google-analytics",
        ),
        ({"services": {"nope": True}}, "/services/nope"),
        ({"policy_version": 7}, "/policy_version"),
        ({"language": "de"}, "/language"),
        ({"occurred_at": (datetime.now(UTC) + timedelta(minutes=10)).isoformat()}, "/occurred_at"),
        ({"subject_id": "has spaces"}, "/subject_id"),
        ({"event_id": "not-a-uuid"}, "/event_id"),
        ({"action": "maybe"}, "/action"),
        ({"unknown_field": 1}, "/unknown_field"),
    ],
)
async def test_invalid_events_are_422_with_a_pointer(
    client: TestClient, site: str, fields: dict[str, Any], pointer: str
) -> None:
    status, body = await post(client, site, event(**fields))
    assert status == 422, body
    assert pointer in [e["pointer"] for e in body["errors"]], body


async def test_choices_are_recorded_as_the_rules_derive_them(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    await post(
        client,
        site,
        {
            "events": [
                event(action="accept_all"),
                event(action="reject_all"),
                event(
                    action="custom",
                    purposes={
                        "necessary": True,
                        "preferences": True,
                        "statistics": False,
                        "marketing": False,
                    },
                    services={"google-analytics": False},
                ),
                event(action="withdraw"),
            ]
        },
    )
    rows = await stored(db, site)
    got = [(r["action"], r["purposes"], r["services"]) for r in rows]
    all_on = {"necessary": True, "preferences": True, "statistics": True, "marketing": True}
    only_required = {
        "necessary": True,
        "preferences": False,
        "statistics": False,
        "marketing": False,
    }
    assert got[0] == (
        "accept_all",
        all_on,
        {"session": True, "google-analytics": True, "facebook-pixel": True},
    )
    assert got[1] == (
        "reject_all",
        only_required,
        {"session": True, "google-analytics": False, "facebook-pixel": False},
    )
    assert got[2][1] == {**only_required, "preferences": True}
    assert got[3][0] == "withdraw" and got[3][1] == only_required


async def test_event_for_an_older_version_is_recorded_as_such(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    r = await client.post(f"/v1/sites/{site}/policies", json=policy_body(), headers=ADMIN)
    assert (await r.json())["version"] == 2
    assert (await post(client, site, event(policy_version=1)))[0] == 201
    row = (await stored(db, site))[0]
    assert row["policy_version"] == 1
    first = await (await client.get(f"/v1/sites/{site}/policies/1", headers=ADMIN)).json()
    assert row["policy_sha256"] == first["content_sha256"]


async def test_foreign_origin_is_403_and_missing_origin_needs_admin(
    client: TestClient, site: str
) -> None:
    assert (await post(client, site, event(), {"Origin": "https://evil.example"}))[0] == 403
    assert (await post(client, site, event(), {}))[0] == 401
    read = await make_key(client, site, "read")
    assert (await post(client, site, event(), read))[0] == 403
    assert (await post(client, site, event(), ADMIN))[0] == 201


async def test_preflight_echoes_the_exact_origin(client: TestClient, site: str) -> None:
    r = await client.options(
        f"/v1/sites/{site}/events",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.headers["Vary"] == "Origin"
    assert int(r.headers["Access-Control-Max-Age"]) > 0
    r = await client.options(f"/v1/sites/{site}/events", headers={"Origin": "https://x.example"})
    assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
    r = await client.post(f"/v1/sites/{site}/events", json=event(), headers=HDR)
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_server_records_its_own_facts(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    body = event(page_url="https://shop.example/priser?email=a@b.no#top", source="cmp-banner/1.0")
    headers = {**HDR, "User-Agent": "U" * 400, "Sec-GPC": "1"}
    assert (await post(client, site, body, headers))[0] == 201
    row = (await stored(db, site))[0]
    assert row["page_url"] == "https://shop.example/priser"
    assert row["user_agent"] == "U" * 256
    assert row["origin"] == ORIGIN
    assert row["ip_prefix"] == "127.0.0.0/24"
    assert row["gpc"] is True and row["purposes"]["marketing"] is False
    assert row["purposes"]["statistics"] is True and row["services"]["facebook-pixel"] is False
    assert row["received_at"] is not None


async def test_forwarded_for_is_ignored_unless_the_peer_is_trusted(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    headers = {**HDR, "X-Forwarded-For": "203.0.113.77"}
    assert (await post(client, site, event(), headers))[0] == 201
    assert (await stored(db, site))[0]["ip_prefix"] == "127.0.0.0/24"


async def test_forwarded_for_from_a_trusted_proxy_is_used(
    aiohttp_client: Any, settings: Any, db_dsn: str, db: asyncpg.Connection
) -> None:
    from cmp.app import create_app

    trusted = settings.model_copy(update={"trusted_proxies": ["127.0.0.0/8"]})
    client = await aiohttp_client(create_app(trusted, db_dsn))
    site = await make_site(client)
    headers = {**HDR, "X-Forwarded-For": "2001:db8:abcd:12::1, 127.0.0.5"}
    assert (await post(client, site, event(), headers))[0] == 201
    assert (await stored(db, site))[0]["ip_prefix"] == "2001:db8:abcd::/48"


async def test_retry_is_stored_once_and_reuse_is_409(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    body = event()
    assert await post(client, site, body) == (201, {"accepted": 1, "duplicates": 0})
    reordered = dict(reversed(list(body.items())))
    assert await post(client, site, reordered) == (201, {"accepted": 0, "duplicates": 1})
    other = event()
    conflicting = {"events": [other, {**body, "action": "reject_all"}]}
    status, problem = await post(client, site, conflicting)
    assert status == 409 and body["event_id"] in problem["detail"]
    rows = await stored(db, site)
    assert [str(r["event_id"]) for r in rows] == [body["event_id"]]  # `other` not stored either


async def test_concurrent_requests_share_commits_and_all_are_stored(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    bodies = [event() for _ in range(200)]
    results = await asyncio.gather(*(post(client, site, b) for b in bodies))
    assert all(status == 201 for status, _ in results)
    rows = await stored(db, site)
    assert sorted(str(r["event_id"]) for r in rows) == sorted(b["event_id"] for b in bodies)
    assert [r["seq"] for r in rows] == list(range(1, 201))
    metrics = await (await client.get("/metrics")).text()
    count = _metric(metrics, "cmp_commit_batch_events_count")
    total = _metric(metrics, "cmp_commit_batch_events_sum")
    assert total / count > 1.0, "concurrent requests were not batched"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing")


async def test_full_queue_is_503_with_retry_after(
    aiohttp_client: Any, settings: Any, db_dsn: str
) -> None:
    from cmp.app import create_app

    tiny = settings.model_copy(update={"queue_max": 5})
    client = await aiohttp_client(create_app(tiny, db_dsn))
    site = await make_site(client)
    status, body = await post(client, site, {"events": [event() for _ in range(6)]})
    assert status == 503 and body["status"] == 503


async def test_rate_limit_is_429_with_retry_after(
    aiohttp_client: Any, settings: Any, db_dsn: str
) -> None:
    from cmp.app import create_app

    strict = settings.model_copy(update={"rate_per_second": 1.0, "rate_burst": 3})
    client = await aiohttp_client(create_app(strict, db_dsn))
    site = await make_site(client)
    statuses = []
    for _ in range(5):
        r = await client.post(f"/v1/sites/{site}/events", json=event(), headers=HDR)
        statuses.append(r.status)
        if r.status == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert statuses[:3] == [201, 201, 201] and 429 in statuses[3:]


async def test_unknown_site_is_404(client: TestClient) -> None:
    assert (await post(client, "t-nosuchsite", event()))[0] == 404


async def test_concurrent_retries_of_one_event_are_stored_once(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    body = event()
    clash = {**body, "action": "reject_all"}
    results = await asyncio.gather(
        *(post(client, site, body) for _ in range(5)), post(client, site, clash)
    )
    answers = sorted((status, json.dumps(answer, sort_keys=True)) for status, answer in results)
    ok = [a for a in answers if a[0] == 201]
    assert len(ok) == 5 or len(ok) == 1  # the clash lost, or was first and the rest lost
    stored_rows = await stored(db, site)
    assert len(stored_rows) == 1
    new = [json.loads(a) for s, a in ok if json.loads(a)["accepted"] == 1]
    assert len(new) == 1, answers  # exactly one request stored it; others are retries
    assert {s for s, _ in answers} <= {201, 409}


async def test_a_site_created_after_a_miss_is_found_at_once(client: TestClient) -> None:
    site_id = new_site_id()
    assert (await post(client, site_id, event()))[0] == 404  # the miss is remembered
    r = await client.put(f"/v1/sites/{site_id}", json=site_body(), headers=ADMIN)
    assert r.status == 201
    r = await client.post(f"/v1/sites/{site_id}/policies", json=policy_body(), headers=ADMIN)
    assert r.status == 201
    assert (await post(client, site_id, event()))[0] == 201


@given(st.ip_addresses())
def test_ip_prefix_is_the_network_of_any_address(address: Any) -> None:
    ip = address.ipv4_mapped or address if address.version == 6 else address
    bits = 24 if ip.version == 4 else 48
    assert ip_prefix(str(address)) == str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def test_ip_prefix_refuses_what_is_not_an_address() -> None:
    for text in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "x", "1.2.3.4/24"]:
        assert ip_prefix(text) is None, text


async def test_an_event_carries_the_impression_it_answers_and_its_variant(
    client: TestClient, site: str, db: asyncpg.Connection
) -> None:
    shown = "9d4f6a2b-3c1e-4f5a-8b7c-6d5e4f3a2b1c"
    assert (await post(client, site, event(impression_id=shown.upper(), variant="b")))[0] == 201
    row = (await stored(db, site))[0]
    assert (str(row["impression_id"]), row["variant"]) == (shown, "b")
    # Both are chained: the export's record holds them and verifies.
    from cmp.audit.verify import verify_export

    r = await client.get(f"/v1/sites/{site}/events", headers=ADMIN)
    lines = (await r.text()).splitlines()
    assert json.loads(lines[0])["impression_id"] == shown and verify_export(lines).ok
    for bad in ({"impression_id": "x"}, {"variant": "B B"}):
        status, body = await post(client, site, event(**bad))
        assert status == 422 and body["errors"][0]["pointer"] == "/" + next(iter(bad))


def test_only_our_proxies_addresses_are_remembered() -> None:
    """The trusted-proxy check remembers the proxies it met (so the peer of each request
    behind one is not parsed again), never a visitor's address, and at most a handful."""
    cidrs = ("10.0.0.0/8", "2001:db8::/32")
    assert collect._trusted(cidrs, "10.1.2.3") is True
    assert collect._trusted(cidrs, "10.1.2.3") is True  # from memory now
    assert collect._trusted(cidrs, "2001:db8::7") is True
    assert collect._trusted(cidrs, "203.0.113.9") is False
    assert collect._trusted(cidrs, "not an address") is None
    assert collect._trusted(("192.0.2.0/24",), "10.1.2.3") is False  # per proxy list
    for n in range(200):
        assert collect._trusted(cidrs, f"10.0.{n}.1") is True
    remembered = collect._proxies[cidrs]
    assert "203.0.113.9" not in remembered and "10.1.2.3" in remembered
    assert len(remembered) == collect.PROXIES_REMEMBERED
