"""Jurisdiction rules of a site through the admin API (docs/jurisdictions.md)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from cmp.app import create_app
from cmp.audit.verify import verify_export
from cmp.config import Settings
from cmp.jurisdiction import DEFAULT_RULE, Rule
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

RULES: list[dict[str, Any]] = [
    {"id": "eea", "countries": ["NO", "SE", "DE"], "model": "opt_in"},
    {"id": "us-ca", "regions": ["US-CA"], "model": "opt_out"},
    {"id": "rest", "model": "notice_only", "default": True},
]


async def test_rules_are_stored_and_answered(client: TestClient) -> None:
    site_id = new_site_id()
    body = site_body(jurisdictions=RULES, fallback="eea")
    r = await client.put(f"/v1/sites/{site_id}", json=body, headers=ADMIN)
    assert r.status == 201, await r.text()
    expected = [{"countries": [], "regions": [], "default": False, **rule} for rule in RULES]
    assert (await r.json())["jurisdictions"] == expected
    r = await client.get(f"/v1/sites/{site_id}", headers=ADMIN)
    got = await r.json()
    assert got["jurisdictions"] == expected and got["fallback"] == "eea"
    # Taken away again: the site has one opt-in rule for everyone.
    r = await client.put(f"/v1/sites/{site_id}", json=site_body(), headers=ADMIN)
    assert (await r.json())["jurisdictions"] is None


async def _refused(client: TestClient, **extra: Any) -> list[dict[str, str]]:
    r = await client.put(f"/v1/sites/{new_site_id()}", json=site_body(**extra), headers=ADMIN)
    assert r.status == 422, await r.text()
    errors: list[dict[str, str]] = (await r.json())["errors"]
    return errors


async def test_ambiguous_or_incomplete_rules_are_422_with_pointers(client: TestClient) -> None:
    overlap = [*RULES, {"id": "nordics", "countries": ["FI", "SE"], "model": "opt_in"}]
    assert await _refused(client, jurisdictions=overlap) == [
        {
            "pointer": "/jurisdictions/3/countries/1",
            "detail": "'SE' is also in rule 'eea': the match would depend on order",
        }
    ]
    errors = await _refused(client, jurisdictions=RULES[:2], fallback="nowhere")
    assert [e["pointer"] for e in errors] == ["/jurisdictions", "/fallback"]
    errors = await _refused(client, jurisdictions=[{**RULES[0], "countries": ["NO", "QQ"]}])
    assert errors[0]["pointer"] == "/jurisdictions/0/countries/1"
    errors = await _refused(client, jurisdictions=[{**RULES[1], "regions": ["US-XX"]}])
    assert errors[0]["pointer"] == "/jurisdictions/0/regions/0"
    errors = await _refused(client, jurisdictions=[{**RULES[2], "model": "maybe"}])
    assert errors[0]["pointer"] == "/jurisdictions/0/model"


async def test_many_overlaps_are_capped(client: TestClient) -> None:
    many = [{"id": "a", "countries": ["NO"] * 100, "model": "opt_in", "default": True}]
    r = await client.put(
        f"/v1/sites/{new_site_id()}", json=site_body(jurisdictions=many), headers=ADMIN
    )
    body = await r.json()
    assert r.status == 422 and len(body["errors"]) == 20 and body["errors_omitted"] == 79


# --- location, records and state under the rule -------------------------------------


async def geo_client(
    aiohttp_client: Any, settings: Settings, db_dsn: str, trusted: str
) -> TestClient:
    """The app behind a proxy at `trusted` that sets the location headers (the test
    client connects from 127.0.0.1)."""
    changed = settings.model_copy(
        update={
            "trusted_proxies": [trusted],
            "geo_country_header": "CF-IPCountry",
            "geo_region_header": "cf-region-code",
        }
    )
    client: TestClient = await aiohttp_client(create_app(changed, db_dsn))
    return client


async def rules_site(client: TestClient) -> str:
    site_id = new_site_id()
    body = site_body(jurisdictions=RULES, fallback="eea")
    r = await client.put(f"/v1/sites/{site_id}", json=body, headers=ADMIN)
    assert r.status == 201, await r.text()
    r = await client.post(f"/v1/sites/{site_id}/policies", json=policy_body(), headers=ADMIN)
    assert r.status == 201, await r.text()
    return site_id


async def post(client: TestClient, site_id: str, body: dict[str, Any], **headers: str) -> None:
    r = await client.post(
        f"/v1/sites/{site_id}/events", json=body, headers={"Origin": ORIGIN, **headers}
    )
    assert r.status == 201, await r.text()


async def exported(client: TestClient, site_id: str) -> list[dict[str, Any]]:
    audit = await make_key(client, site_id, "audit")
    r = await client.get(f"/v1/sites/{site_id}/events", headers=audit)
    lines = (await r.text()).splitlines()
    assert verify_export(lines).ok  # what `cmpd verify` checks
    return [json.loads(line) for line in lines]


def rule_sha(rule_id: str) -> str:
    return next(Rule.model_validate(r) for r in RULES if r["id"] == rule_id).sha256()


async def test_the_record_says_under_which_rule_and_from_where(
    aiohttp_client: Any, settings: Settings, db_dsn: str
) -> None:
    client = await geo_client(aiohttp_client, settings, db_dsn, "127.0.0.0/8")
    site_id = await rules_site(client)
    await post(client, site_id, event(), **{"CF-IPCountry": "US", "cf-region-code": "CA"})
    await post(client, site_id, event(), **{"CF-IPCountry": "SE"})
    await post(client, site_id, event(), **{"CF-IPCountry": "JP"})
    await post(client, site_id, event(), **{"CF-IPCountry": "XX"})
    rows = await exported(client, site_id)
    got = [(r["rule"], r["rule_sha256"], r["country"], r["region"]) for r in rows]
    assert got == [
        ("us-ca", rule_sha("us-ca"), "US", "US-CA"),
        ("eea", rule_sha("eea"), "SE", None),
        ("rest", rule_sha("rest"), "JP", None),
        ("eea", rule_sha("eea"), None, None),  # unknown: the fallback
    ]


async def test_the_location_header_of_an_untrusted_peer_is_unknown_location(
    aiohttp_client: Any, settings: Settings, db_dsn: str
) -> None:
    client = await geo_client(aiohttp_client, settings, db_dsn, "10.0.0.0/8")
    site_id = await rules_site(client)
    await post(client, site_id, event(), **{"CF-IPCountry": "US", "cf-region-code": "US-CA"})
    (row,) = await exported(client, site_id)
    assert (row["rule"], row["country"], row["region"]) == ("eea", None, None)


async def test_a_site_without_rules_records_the_one_opt_in_rule(client: TestClient) -> None:
    site_id = await make_site(client)
    await post(client, site_id, event())
    (row,) = await exported(client, site_id)
    assert (row["rule"], row["rule_sha256"]) == ("default", DEFAULT_RULE.sha256())


async def state(
    client: TestClient, site_id: str, subject: str, query: str = "", **headers: str
) -> dict[str, Any]:
    read = await make_key(client, site_id, "read")
    r = await client.get(
        f"/v1/sites/{site_id}/subjects/{subject}/consent?{query}", headers={**read, **headers}
    )
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def test_state_under_each_model(aiohttp_client: Any, settings: Settings, db_dsn: str) -> None:
    client = await geo_client(aiohttp_client, settings, db_dsn, "127.0.0.0/8")
    site_id = await rules_site(client)
    # No event: the rule of the given location, or the fallback.
    nobody = "s-nobody"
    eea = await state(client, site_id, nobody)
    assert (eea["rule"], eea["model"], eea["status"], eea["needs_prompt"]) == (
        "eea",
        "opt_in",
        "none",
        True,
    )
    assert eea["purposes"]["marketing"] is False
    ca = await state(client, site_id, nobody, "country=US&region=CA")
    assert (ca["rule"], ca["model"], ca["status"], ca["needs_prompt"]) == (
        "us-ca",
        "opt_out",
        "default",
        False,
    )
    assert ca["purposes"] == {
        "necessary": True,
        "preferences": True,
        "statistics": True,
        "marketing": True,
    }
    assert ca["consent_mode"]["ad_storage"] == "granted"
    gpc = await state(client, site_id, nobody, "country=US&region=US-CA", **{"Sec-GPC": "1"})
    assert gpc["purposes"]["marketing"] is False and gpc["purposes"]["statistics"] is True
    assert gpc["gpc"] is True and gpc["consent_mode"]["ad_storage"] == "denied"
    jp = await state(client, site_id, nobody, "country=JP")
    assert (jp["model"], jp["status"]) == ("notice_only", "default")
    assert all(jp["purposes"].values())
    # An opt-out event denies; GPC on the event is recorded and denies `gpc` purposes.
    ca_headers = {"CF-IPCountry": "US", "cf-region-code": "US-CA"}
    await post(client, site_id, event("s-out", action="reject_all"), **ca_headers)
    out = await state(client, site_id, "s-out")  # its rule is its event's, not a location's
    assert (out["rule"], out["status"], out["purposes"]["statistics"]) == ("us-ca", "valid", False)
    await post(
        client, site_id, event("s-gpc", action="accept_all"), **ca_headers, **{"Sec-GPC": "1"}
    )
    signal = await state(client, site_id, "s-gpc", "country=SE")
    assert signal["rule"] == "us-ca" and signal["gpc"] is True
    assert signal["purposes"]["marketing"] is False and signal["purposes"]["statistics"] is True
    rows = await exported(client, site_id)
    assert rows[-1]["gpc"] is True and rows[-1]["purposes"]["marketing"] is False
    # notice_only: the acknowledgement is recorded and grants.
    await post(client, site_id, event("s-ack", action="accept_all"), **{"CF-IPCountry": "JP"})
    ack = await state(client, site_id, "s-ack")
    assert (ack["rule"], ack["status"], all(ack["purposes"].values())) == ("rest", "valid", True)


async def test_lookup_takes_the_location_for_subjects_without_events(
    aiohttp_client: Any, settings: Settings, db_dsn: str
) -> None:
    client = await geo_client(aiohttp_client, settings, db_dsn, "127.0.0.0/8")
    site_id = await rules_site(client)
    await post(client, site_id, event("s-no", action="reject_all"), **{"CF-IPCountry": "NO"})
    read = await make_key(client, site_id, "read")
    body = {"subject_ids": ["s-no", "s-new"], "country": "us", "region": "ca"}
    r = await client.post(f"/v1/sites/{site_id}/consent/lookup", json=body, headers=read)
    assert r.status == 200, await r.text()
    known, new = (await r.json())["results"]
    assert (known["rule"], known["status"]) == ("eea", "valid")
    assert (new["rule"], new["model"], new["status"]) == ("us-ca", "opt_out", "default")
    r = await client.post(
        f"/v1/sites/{site_id}/consent/lookup", json={**body, "country": "USA"}, headers=read
    )
    assert r.status == 422
