"""Consent state (docs/api.md): status, fail-closed, Consent Mode v2, ETag, lookup."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.factories import ADMIN, ORIGIN, event, make_key, make_site, policy_body

HDR = {"Origin": ORIGIN}
DENIED_BUT_SECURITY = {
    "ad_storage": "denied",
    "ad_user_data": "denied",
    "ad_personalization": "denied",
    "analytics_storage": "denied",
    "functionality_storage": "denied",
    "personalization_storage": "denied",
    "security_storage": "granted",
}
REQUIRED_ONLY = {"necessary": True, "preferences": False, "statistics": False, "marketing": False}


@pytest.fixture
async def site(client: TestClient) -> dict[str, Any]:
    site_id = await make_site(client)
    return {"id": site_id, "read": await make_key(client, site_id, "read")}


async def state(client: TestClient, site: dict[str, Any], subject: str) -> dict[str, Any]:
    r = await client.get(f"/v1/sites/{site['id']}/subjects/{subject}/consent", headers=site["read"])
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def record(client: TestClient, site: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = event(**fields)
    r = await client.post(f"/v1/sites/{site['id']}/events", json=body, headers=HDR)
    assert r.status == 201, await r.text()
    return body


async def test_unknown_subject_is_none_and_fails_closed(
    client: TestClient, site: dict[str, Any]
) -> None:
    s = await state(client, site, "nobody-yet")
    assert s["status"] == "none" and s["needs_prompt"] is True
    assert s["purposes"] == REQUIRED_ONLY
    assert s["consent_mode"] == DENIED_BUT_SECURITY
    assert s["current_policy_version"] == 1 and s["policy_version"] is None


async def test_accept_all_is_valid_with_every_signal_granted(
    client: TestClient, site: dict[str, Any]
) -> None:
    body = await record(client, site)
    s = await state(client, site, body["subject_id"])
    assert s["status"] == "valid" and s["needs_prompt"] is False
    assert set(s["consent_mode"].values()) == {"granted"}
    assert s["event_id"] == body["event_id"] and s["action"] == "accept_all"
    assert s["recorded_at"].endswith("Z") and s["expires_at"] > s["recorded_at"]


async def test_consent_mode_follows_the_granted_purposes(
    client: TestClient, site: dict[str, Any]
) -> None:
    body = await record(
        client,
        site,
        action="custom",
        purposes={"preferences": True, "statistics": False, "marketing": False},
    )
    s = await state(client, site, body["subject_id"])
    assert s["consent_mode"] == {
        **DENIED_BUT_SECURITY,
        "functionality_storage": "granted",
        "personalization_storage": "granted",
    }


async def test_latest_event_wins_and_withdraw_denies(
    client: TestClient, site: dict[str, Any]
) -> None:
    subject = str(uuid.uuid4())
    await record(client, site, subject_id=subject)
    await record(client, site, subject_id=subject, action="withdraw")
    s = await state(client, site, subject)
    assert s["status"] == "valid" and s["action"] == "withdraw"
    assert s["purposes"] == REQUIRED_ONLY and s["consent_mode"] == DENIED_BUT_SECURITY


async def test_new_material_version_makes_consent_stale(
    client: TestClient, site: dict[str, Any]
) -> None:
    body = await record(client, site)
    r = await client.post(
        f"/v1/sites/{site['id']}/policies", json=policy_body(material=False), headers=ADMIN
    )
    assert r.status == 201
    assert (await state(client, site, body["subject_id"]))["status"] == "valid"
    r = await client.post(
        f"/v1/sites/{site['id']}/policies", json=policy_body(extra_purpose=True), headers=ADMIN
    )
    assert r.status == 201
    s = await state(client, site, body["subject_id"])
    assert s["status"] == "stale" and s["needs_prompt"] is True
    assert s["policy_version"] == 1 and s["current_policy_version"] == 3
    assert s["purposes"] == {**REQUIRED_ONLY, "social": False}
    assert s["consent_mode"] == DENIED_BUT_SECURITY


async def test_consent_older_than_validity_is_expired(
    client: TestClient, site: dict[str, Any], db: asyncpg.Connection
) -> None:
    body = await record(client, site)
    await db.execute(
        "UPDATE consent_state SET recorded_at = now() - interval '366 days'"
        " WHERE site_id = $1 AND subject_id = $2",
        site["id"],
        body["subject_id"],
    )
    s = await state(client, site, body["subject_id"])
    assert s["status"] == "expired" and s["needs_prompt"] is True
    assert s["consent_mode"] == DENIED_BUT_SECURITY


async def test_etag_gives_304(client: TestClient, site: dict[str, Any]) -> None:
    body = await record(client, site)
    path = f"/v1/sites/{site['id']}/subjects/{body['subject_id']}/consent"
    r = await client.get(path, headers=site["read"])
    etag = r.headers["ETag"]
    r = await client.get(path, headers={**site["read"], "If-None-Match": etag})
    assert r.status == 304
    await record(client, site, subject_id=body["subject_id"], action="reject_all")
    r = await client.get(path, headers={**site["read"], "If-None-Match": etag})
    assert r.status == 200 and r.headers["ETag"] != etag


async def test_lookup_answers_in_request_order(client: TestClient, site: dict[str, Any]) -> None:
    a = await record(client, site)
    b = await record(client, site, action="reject_all")
    ids = [b["subject_id"], "unknown-1", a["subject_id"]]
    r = await client.post(
        f"/v1/sites/{site['id']}/consent/lookup", json={"subject_ids": ids}, headers=site["read"]
    )
    assert r.status == 200 and "ETag" in r.headers
    results = (await r.json())["results"]
    assert [x["subject_id"] for x in results] == ids
    assert [x["status"] for x in results] == ["valid", "none", "valid"]
    assert results[0]["action"] == "reject_all"


async def test_lookup_of_more_than_1000_is_422(client: TestClient, site: dict[str, Any]) -> None:
    r = await client.post(
        f"/v1/sites/{site['id']}/consent/lookup",
        json={"subject_ids": [f"s{i}" for i in range(1001)]},
        headers=site["read"],
    )
    assert r.status == 422


async def test_state_needs_a_read_key_of_that_site(
    client: TestClient, site: dict[str, Any]
) -> None:
    path = f"/v1/sites/{site['id']}/subjects/x/consent"
    assert (await client.get(path)).status == 401
    other = await make_site(client)
    assert (await client.get(path, headers=await make_key(client, other, "read"))).status == 404
    audit = await make_key(client, site["id"], "audit")
    assert (await client.get(path, headers=audit)).status == 403
    assert (await client.get(path, headers=ADMIN)).status == 200


async def test_invalid_subject_id_is_400(client: TestClient, site: dict[str, Any]) -> None:
    r = await client.get(
        f"/v1/sites/{site['id']}/subjects/{'x' * 200}/consent", headers=site["read"]
    )
    assert r.status == 400
