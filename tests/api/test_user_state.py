"""Linked users, the state (docs/linked-users.md): a user's state is per purpose the
latest decision among the subjects linked to it now, under the current material policy
version; with `share_across_devices` a linked subject's own state (and lookup) is its
user's; read-your-writes as for any state."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.api.test_links import link
from tests.factories import ADMIN, ORIGIN, event, make_key, make_site, policy_body, site_body


async def decide(client: TestClient, site_id: str, subject_id: str, **fields: Any) -> None:
    body = event(subject_id, **fields)
    r = await client.post(f"/v1/sites/{site_id}/events", json=body, headers={"Origin": ORIGIN})
    assert r.status == 201, await r.text()


async def state(client: TestClient, path: str, key: dict[str, str]) -> dict[str, Any]:
    r = await client.get(path, headers=key)
    assert r.status == 200, await r.text()
    doc: dict[str, Any] = await r.json()
    return doc


async def test_the_phone_follows_the_laptop_and_back(client: TestClient) -> None:
    site_id = await make_site(client)
    identify = await make_key(client, site_id, "identify")
    read = await make_key(client, site_id, "read")
    base = f"/v1/sites/{site_id}"
    await decide(client, site_id, "laptop", action="reject_all")
    assert (await link(client, site_id, "laptop", "customer-1", identify)).status == 201
    assert (await link(client, site_id, "phone", "customer-1", identify)).status == 201

    user = await state(client, f"{base}/users/customer-1/consent", read)
    assert user["status"] == "valid" and user["needs_prompt"] is False
    assert user["purposes"]["marketing"] is False and user["action"] == "reject_all"
    assert user["subjects"] == ["laptop", "phone"] and user["user_id"] == "customer-1"
    assert user["as_of"] == user["recorded_at"]
    assert "subject_id" not in user
    phone = await state(client, f"{base}/subjects/phone/consent", read)
    assert phone["subject_id"] == "phone" and phone["status"] == "valid"
    assert phone["purposes"]["marketing"] is False  # the phone stops asking

    await decide(client, site_id, "phone", action="accept_all")  # read-your-writes
    laptop = await state(client, f"{base}/subjects/laptop/consent", read)
    assert laptop["action"] == "accept_all" and laptop["purposes"]["marketing"] is True
    r = await client.post(
        f"{base}/consent/lookup",
        json={"subject_ids": ["laptop", "stranger"], "user_ids": [" customer-1", "nobody"]},
        headers=read,
    )
    assert r.status == 200, await r.text()
    doc = await r.json()
    assert [s["status"] for s in doc["results"]] == ["valid", "none"]
    assert [u["user_id"] for u in doc["users"]] == ["customer-1", "nobody"]
    assert doc["users"][0]["purposes"]["marketing"] is True
    assert doc["users"][1]["subjects"] == [] and doc["users"][1]["status"] == "none"

    # Unlinked, the laptop has its own state again.
    assert (await client.delete(f"{base}/subjects/laptop/link", headers=identify)).status == 201
    laptop = await state(client, f"{base}/subjects/laptop/consent", read)
    assert laptop["action"] == "reject_all"
    user = await state(client, f"{base}/users/customer-1/consent", read)
    assert user["subjects"] == ["phone"] and user["action"] == "accept_all"


async def test_a_decision_under_an_older_material_version_does_not_count(
    client: TestClient,
) -> None:
    site_id = await make_site(client)
    identify = await make_key(client, site_id, "identify")
    read = await make_key(client, site_id, "read")
    await decide(client, site_id, "laptop", action="accept_all")
    r = await client.post(f"/v1/sites/{site_id}/policies", json=policy_body(), headers=ADMIN)
    assert r.status == 201
    for subject in ("laptop", "phone"):
        assert (await link(client, site_id, subject, "u", identify)).status == 201
    user = await state(client, f"/v1/sites/{site_id}/users/u/consent", read)
    assert user["status"] == "stale" and user["purposes"]["marketing"] is False
    assert user["as_of"] is None
    await decide(client, site_id, "phone", action="reject_all", policy_version=2)
    user = await state(client, f"/v1/sites/{site_id}/users/u/consent", read)
    assert user["status"] == "valid" and user["action"] == "reject_all"
    assert user["policy_version"] == 2
    # A later decision under the old version (a page cached long) does not count either.
    await decide(client, site_id, "laptop", action="accept_all", policy_version=1)
    user = await state(client, f"/v1/sites/{site_id}/users/u/consent", read)
    assert user["status"] == "valid" and user["action"] == "reject_all"


async def test_per_purpose_the_latest_decision_wins(client: TestClient) -> None:
    site_id = await make_site(client)
    identify = await make_key(client, site_id, "identify")
    read = await make_key(client, site_id, "read")
    choice = {"necessary": True, "preferences": True, "statistics": False, "marketing": True}
    await decide(client, site_id, "a", action="custom", purposes=choice)
    await decide(client, site_id, "b", action="reject_all")
    for subject in ("a", "b"):
        assert (await link(client, site_id, subject, "u", identify)).status == 201
    user = await state(client, f"/v1/sites/{site_id}/users/u/consent", read)
    # b's is later and names every purpose of the version: it decides them all.
    assert user["action"] == "reject_all" and user["purposes"]["preferences"] is False


async def test_without_sharing_a_subject_keeps_its_own_state(client: TestClient) -> None:
    site_id = await make_site(client)
    r = await client.put(
        f"/v1/sites/{site_id}", json=site_body(share_across_devices=False), headers=ADMIN
    )
    assert r.status == 200 and (await r.json())["share_across_devices"] is False
    identify = await make_key(client, site_id, "identify")
    read = await make_key(client, site_id, "read")
    await decide(client, site_id, "laptop", action="reject_all")
    for subject in ("laptop", "phone"):
        assert (await link(client, site_id, subject, "u", identify)).status == 201
    phone = await state(client, f"/v1/sites/{site_id}/subjects/phone/consent", read)
    assert phone["status"] == "none" and phone["needs_prompt"] is True
    user = await state(client, f"/v1/sites/{site_id}/users/u/consent", read)
    assert user["status"] == "valid" and user["action"] == "reject_all"


async def test_a_user_id_that_cannot_be_one_is_400(client: TestClient) -> None:
    site_id = await make_site(client)
    read = await make_key(client, site_id, "read")
    r = await client.get(f"/v1/sites/{site_id}/users/%20%20/consent", headers=read)
    assert r.status == 400
    r = await client.get(f"/v1/sites/{site_id}/users/a%01b/consent", headers=read)
    assert r.status == 400
    # What trimming would hide is refused as sent (schemathesis's case, and a C1 control).
    for user_id in ("%5B%1F%0A", "a%C2%85"):
        r = await client.get(f"/v1/sites/{site_id}/users/{user_id}/consent", headers=read)
        assert r.status == 400, user_id
    r = await client.post(
        f"/v1/sites/{site_id}/consent/lookup",
        json={"subject_ids": [], "user_ids": []},
        headers=read,
    )
    assert r.status == 422
