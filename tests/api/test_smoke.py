"""End-to-end smoke: a site, a policy, an event, its state — through real HTTP."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.factories import ORIGIN, event, make_key, make_site


async def test_event_posted_by_a_banner_becomes_the_subjects_state(client: TestClient) -> None:
    site_id = await make_site(client)
    read = await make_key(client, site_id, "read")
    body = event(
        action="custom", purposes={"preferences": False, "statistics": True, "marketing": False}
    )
    r = await client.post(f"/v1/sites/{site_id}/events", json=body, headers={"Origin": ORIGIN})
    assert r.status == 201, await r.text()
    assert await r.json() == {"accepted": 1, "duplicates": 0}
    r = await client.get(f"/v1/sites/{site_id}/subjects/{body['subject_id']}/consent", headers=read)
    assert r.status == 200
    state = await r.json()
    assert state["status"] == "valid"
    assert state["purposes"] == {
        "necessary": True,
        "preferences": False,
        "statistics": True,
        "marketing": False,
    }
    assert state["services"] == {"session": True, "google-analytics": True, "facebook-pixel": False}
    assert state["consent_mode"]["analytics_storage"] == "granted"
    assert state["consent_mode"]["ad_storage"] == "denied"
    assert state["event_id"] == body["event_id"]
