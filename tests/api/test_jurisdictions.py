"""Jurisdiction rules of a site through the admin API (docs/jurisdictions.md)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.factories import ADMIN, new_site_id, site_body

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
