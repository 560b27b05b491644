"""A jurisdiction rule's `share_across_devices` (docs/jurisdictions.md, docs/linked-users.md):
it overrides the site's setting for subjects under the rule, in the state read, the
lookup and the banner's identify answer; absent, the site's setting holds."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from cmp.config import Settings
from cmp.linktokens import mint
from tests.api.test_jurisdictions import geo_client, post
from tests.api.test_link_tokens import link_secret
from tests.api.test_links import link
from tests.factories import ADMIN, ORIGIN, event, make_key, new_site_id, policy_body, site_body

RULES: list[dict[str, Any]] = [
    {"id": "de", "countries": ["DE"], "model": "opt_in"},
    {"id": "se", "countries": ["SE"], "model": "opt_in"},
    {"id": "eea", "countries": ["NO"], "model": "opt_in"},
    {"id": "rest", "model": "opt_in", "default": True},
]


async def sharing_site(client: TestClient, *, site: bool, overrides: dict[str, bool]) -> str:
    """A site whose own `share_across_devices` is `site` and whose rules named in
    `overrides` say otherwise."""
    rules = [
        {**r, "share_across_devices": overrides[r["id"]]} if r["id"] in overrides else r
        for r in RULES
    ]
    site_id = new_site_id()
    body = site_body(jurisdictions=rules, fallback="eea", share_across_devices=site)
    r = await client.put(f"/v1/sites/{site_id}", json=body, headers=ADMIN)
    assert r.status == 201, await r.text()
    r = await client.post(f"/v1/sites/{site_id}/policies", json=policy_body(), headers=ADMIN)
    assert r.status == 201, await r.text()
    return site_id


async def state(client: TestClient, site_id: str, subject: str, query: str = "") -> dict[str, Any]:
    read = await make_key(client, site_id, "read")
    r = await client.get(f"/v1/sites/{site_id}/subjects/{subject}/consent?{query}", headers=read)
    assert r.status == 200, await r.text()
    doc: dict[str, Any] = await r.json()
    return doc


async def link_all(client: TestClient, site_id: str, *subjects: str) -> None:
    identify_key = await make_key(client, site_id, "identify")
    for subject in subjects:
        assert (await link(client, site_id, subject, "u", identify_key)).status == 201


async def test_a_rule_keeps_consent_per_device_where_the_site_shares(
    aiohttp_client: Any, settings: Settings, db_dsn: str
) -> None:
    client = await geo_client(aiohttp_client, settings, db_dsn, "127.0.0.0/8")
    site_id = await sharing_site(client, site=True, overrides={"de": False})
    await post(client, site_id, event("de-tablet", action="accept_all"), **{"CF-IPCountry": "DE"})
    await post(client, site_id, event("no-laptop", action="reject_all"), **{"CF-IPCountry": "NO"})
    await link_all(client, site_id, "de-tablet", "no-laptop", "se-phone", "de-phone")

    # Under `de` each device keeps its own state: the tablet its acceptance, a new phone
    # is asked; under the rules without the override the user's (the laptop's refusal).
    tablet = await state(client, site_id, "de-tablet")
    assert (tablet["rule"], tablet["action"], tablet["purposes"]["marketing"]) == (
        "de",
        "accept_all",
        True,
    )
    de_phone = await state(client, site_id, "de-phone", "country=DE")
    assert (de_phone["rule"], de_phone["status"], de_phone["needs_prompt"]) == ("de", "none", True)
    se_phone = await state(client, site_id, "se-phone", "country=SE")
    assert (se_phone["status"], se_phone["action"]) == ("valid", "reject_all")
    laptop = await state(client, site_id, "no-laptop")
    assert laptop["action"] == "reject_all"

    # The batched read for server-side tag managers decides per subject the same way.
    read = await make_key(client, site_id, "read")
    body = {"subject_ids": ["de-tablet", "de-phone", "se-phone"], "country": "DE"}
    r = await client.post(f"/v1/sites/{site_id}/consent/lookup", json=body, headers=read)
    assert r.status == 200, await r.text()
    got = [(s["subject_id"], s["status"], s["action"]) for s in (await r.json())["results"]]
    assert got == [
        ("de-tablet", "valid", "accept_all"),
        ("de-phone", "none", None),
        ("se-phone", "none", None),  # its location is DE here: its rule keeps it per device
    ]
    body = {"subject_ids": ["de-tablet", "se-phone"], "country": "SE"}
    r = await client.post(f"/v1/sites/{site_id}/consent/lookup", json=body, headers=read)
    got = [(s["subject_id"], s["action"]) for s in (await r.json())["results"]]
    assert got == [("de-tablet", "accept_all"), ("se-phone", "reject_all")]


async def test_a_rule_shares_where_the_site_keeps_consent_per_device(
    aiohttp_client: Any, settings: Settings, db_dsn: str
) -> None:
    client = await geo_client(aiohttp_client, settings, db_dsn, "127.0.0.0/8")
    site_id = await sharing_site(client, site=False, overrides={"se": True})
    await post(client, site_id, event("se-tablet", action="accept_all"), **{"CF-IPCountry": "SE"})
    await post(client, site_id, event("no-laptop", action="reject_all"), **{"CF-IPCountry": "NO"})
    await link_all(client, site_id, "se-tablet", "no-laptop", "se-phone", "no-phone")

    # Under `se` a subject has the user's state (the laptop's refusal, the latest);
    # elsewhere the site's setting keeps each device's own.
    tablet = await state(client, site_id, "se-tablet")
    assert (tablet["status"], tablet["action"]) == ("valid", "reject_all")
    se_phone = await state(client, site_id, "se-phone", "country=SE")
    assert (se_phone["status"], se_phone["action"]) == ("valid", "reject_all")
    no_phone = await state(client, site_id, "no-phone", "country=NO")
    assert (no_phone["status"], no_phone["needs_prompt"]) == ("none", True)
    read = await make_key(client, site_id, "read")
    body = {"subject_ids": ["se-tablet", "no-phone", "se-phone"], "country": "NO"}
    r = await client.post(f"/v1/sites/{site_id}/consent/lookup", json=body, headers=read)
    assert r.status == 200, await r.text()
    got = [(s["subject_id"], s["status"], s["action"]) for s in (await r.json())["results"]]
    assert got == [
        ("se-tablet", "valid", "reject_all"),
        ("no-phone", "none", None),
        ("se-phone", "none", None),
    ]


async def identify_from(
    client: TestClient, site_id: str, subject: str, token: str, country: str
) -> dict[str, Any] | None:
    """The `state` of the banner's identify answer for a visitor in `country`."""
    r = await client.post(
        f"/v1/sites/{site_id}/subjects/{subject}/identify",
        data=json.dumps({"token": token, "event_id": str(uuid.uuid4())}),
        headers={"Origin": ORIGIN, "Content-Type": "text/plain", "CF-IPCountry": country},
    )
    assert r.status == 201, await r.text()
    found: dict[str, Any] | None = (await r.json())["state"]
    return found


async def test_the_identify_answer_follows_the_subjects_rule(
    aiohttp_client: Any, settings: Settings, db_dsn: str
) -> None:
    client = await geo_client(aiohttp_client, settings, db_dsn, "127.0.0.0/8")
    # (the site's setting, the override, where the user's state is shared, where not)
    for site, overrides, shared, own in (
        (True, {"de": False}, "NO", "DE"),
        (False, {"se": True}, "SE", "NO"),
    ):
        site_id = await sharing_site(client, site=site, overrides=overrides)
        token = mint(await link_secret(client, site_id), site_id, "u", int(time.time()) + 300)
        await post(client, site_id, event("laptop", action="reject_all"), **{"CF-IPCountry": "NO"})
        await identify_from(client, site_id, "laptop", token, "NO")
        answer = await identify_from(client, site_id, f"phone-{shared}", token, shared)
        assert answer is not None and answer["action"] == "reject_all", (site, shared)
        # The banner's own cookie is the device's state: nothing to adopt.
        assert await identify_from(client, site_id, f"phone-{own}", token, own) is None, site


async def test_the_override_is_stored_answered_and_a_boolean(client: TestClient) -> None:
    site_id = new_site_id()
    rules = [{**RULES[0], "share_across_devices": False}, *RULES[1:]]
    r = await client.put(f"/v1/sites/{site_id}", json=site_body(jurisdictions=rules), headers=ADMIN)
    assert r.status == 201, await r.text()
    r = await client.get(f"/v1/sites/{site_id}", headers=ADMIN)
    answered = (await r.json())["jurisdictions"]
    # Absent stays absent (the site's setting), not a default written out.
    assert [rule.get("share_across_devices", "absent") for rule in answered] == [
        False,
        "absent",
        "absent",
        "absent",
    ]
    for bad in ("no", None, 0, "false"):
        rules = [{**RULES[0], "share_across_devices": bad}, *RULES[1:]]
        body = site_body(jurisdictions=rules)
        r = await client.put(f"/v1/sites/{new_site_id()}", json=body, headers=ADMIN)
        assert r.status == 422, (bad, await r.text())
        errors = (await r.json())["errors"]
        assert [e["pointer"] for e in errors] == ["/jurisdictions/0/share_across_devices"], bad
