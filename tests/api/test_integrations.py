"""vanilla-cookieconsent and Klaro payloads, replayed from requests captured in Chromium.

`tests/fixtures/clients/captured-requests.jsonl`: one request a line (method, path, the
headers that matter, raw body) as vanilla-cookieconsent 3.1.0 (fetch and sendBeacon) and
Klaro 0.7.22 in API mode sent them from headless Chromium 156, on the page origin
`http://localhost:18000`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp.api.integrations import KLARO_CONFIGS
from cmp.app import create_app
from tests.factories import ADMIN, make_key, new_site_id, policy_body

CAPTURED = Path(__file__).resolve().parents[1] / "fixtures" / "clients" / "captured-requests.jsonl"
ORIGIN = "http://localhost:18000"
TEXTS = {
    "title": "Cookies",
    "body": "We use cookies.",
    "accept_all": "Accept all",
    "reject_all": "Reject all",
    "settings": "Settings",
    "save": "Save",
}


def captured() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CAPTURED.read_text("utf-8").splitlines() if line]


def purpose(
    key: str, required: bool = False, services: tuple[str, ...] = (), signals: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "key": key,
        "required": required,
        "consent_mode": list(signals),
        "title": {"en": key},
        "services": [{"key": s, "name": s} for s in services],
    }


async def make_integration_site(client: TestClient, purposes: list[dict[str, Any]]) -> str:
    site_id = new_site_id()
    r = await client.put(
        f"/v1/sites/{site_id}",
        headers=ADMIN,
        json={
            "name": "Captured",
            "origins": [ORIGIN],
            "languages": ["en"],
            "default_language": "en",
        },
    )
    assert r.status == 201
    texts = {"en": TEXTS}
    r = await client.post(
        f"/v1/sites/{site_id}/policies",
        headers=ADMIN,
        json={
            "material": True,
            "policy_url": "https://example.com/privacy",
            "purposes": purposes,
            "texts": texts,
        },
    )
    assert r.status == 201, await r.text()
    return site_id


async def replay(client: TestClient, request: dict[str, Any], path: str) -> tuple[int, Any]:
    headers = {
        k: v
        for k, v in request["headers"].items()
        if k
        in (
            "Content-Type",
            "Origin",
            "User-Agent",
            "Access-Control-Request-Method",
            "Access-Control-Request-Headers",
        )
    }
    r = await client.request(
        request["method"], path, data=request["body"].encode(), headers=headers
    )
    text = await r.text()
    return r.status, json.loads(text) if text else None


async def events_of(db: asyncpg.Connection, site_id: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM consent_events WHERE site_id = $1 ORDER BY seq", site_id)


async def test_cookieconsent_capture_maps_to_events_and_repeats_are_duplicates(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await make_integration_site(
        client,
        [
            purpose("necessary", required=True, signals=("security_storage",)),
            purpose("analytics", services=("ga4", "matomo"), signals=("analytics_storage",)),
        ],
    )
    # The capture holds revisions 0 (= current), 1 and 3: give the site three versions.
    r = await client.get(f"/v1/sites/{site_id}/policies/1", headers=ADMIN)
    v1 = await r.json()
    for version in (2, 3):
        r = await client.post(
            f"/v1/sites/{site_id}/policies",
            headers=ADMIN,
            json={
                "material": True,
                "policy_url": v1["policy_url"],
                "purposes": v1["purposes"],
                "texts": v1["texts"],
            },
        )
        assert (await r.json())["version"] == version
    path = f"/v1/sites/{site_id}/integrations/cookieconsent"
    answers = []
    for request in captured():
        if not request["path"].startswith("/consent"):
            continue
        status, body = await replay(client, request, path)
        answers.append((request["method"], status, body))
    assert {status for method, status, _ in answers if method == "OPTIONS"} == {204}
    posts = [body for method, status, body in answers if method == "POST"]
    assert all(status == 201 for method, status, _ in answers if method == "POST"), answers
    new = sum(b["accepted"] for b in posts)
    dups = sum(b["duplicates"] for b in posts)
    rows = await events_of(db, site_id)
    assert len(rows) == new and dups == len(posts) - new
    # Distinct choices in the capture: first consent (revision 0 = current version), a
    # change to "necessary only", the revision bump to 1 (same consentId), another visitor.
    got = [(r["subject_id"][:8], r["action"], r["policy_version"]) for r in rows]
    assert got == [
        ("890c89a7", "accept_all", 3),
        ("890c89a7", "reject_all", 3),
        ("890c89a7", "accept_all", 1),
        ("c5053f26", "reject_all", 3),
    ]
    assert rows[1]["services"] == {"ga4": False, "matomo": False}
    assert rows[0]["source"] == "vanilla-cookieconsent/3"
    assert rows[0]["page_url"] == "http://localhost:18000/site/cc.html"
    read = await make_key(client, site_id, "read")
    subject = rows[2]["subject_id"]
    r = await client.get(f"/v1/sites/{site_id}/subjects/{subject}/consent", headers=read)
    state = await r.json()
    assert state["event_id"] == str(rows[2]["event_id"])
    assert state["status"] == "stale"  # revision 1 < newest material version 3


async def test_klaro_config_and_submits(client: TestClient, db: asyncpg.Connection) -> None:
    site_id = await make_integration_site(
        client,
        [
            purpose("essential", required=True, signals=("security_storage",)),
            purpose("analytics", signals=("analytics_storage",)),
        ],
    )
    r = await client.get(
        f"/v1/privacy-managers/{site_id}/config.json?name=default", headers={"Origin": ORIGIN}
    )
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    config = await r.json()
    assert {s["name"] for s in config["services"]} == {"essential", "analytics"}
    assert next(s for s in config["services"] if s["name"] == "essential")["required"] is True
    assert config["privacyPolicy"] == "https://example.com/privacy"
    submits = [q for q in captured() if q["path"].endswith("/submit")]
    types = []
    for request in submits:
        status, body = await replay(client, request, f"/v1/privacy-managers/{site_id}/submit")
        assert status == 201 and body["ok"] is True, body
        types.append(json.loads(request["body"])["consent_data"]["type"])
    rows = await events_of(db, site_id)
    expected = {"accept": "accept_all", "decline": "reject_all", "save": "custom"}
    assert [r["action"] for r in rows] == [expected[t] for t in types if t != "show"]
    assert len({r["subject_id"] for r in rows}) == len(rows)  # anonymous: one id per submit
    assert all(r["source"] == "klaro:web/0.7.22" for r in rows)
    accepted = next(r for r in rows if r["action"] == "accept_all")
    assert accepted["purposes"] == {"essential": True, "analytics": True}


async def test_klaro_garbage_gets_json_back(client: TestClient) -> None:
    site_id = await make_integration_site(client, [purpose("essential", required=True)])
    r = await client.post(
        f"/v1/privacy-managers/{site_id}/submit",
        data=b"not json",
        headers={"Content-Type": "text/plain", "Origin": ORIGIN},
    )
    assert r.status == 400
    assert (await r.json(content_type=None))["status"] == 400


@pytest.mark.parametrize(
    "wrong",
    [
        {"consent_data": {"type": "save", "consents": {"essential": 0}}},
        {"consent_data": {"type": "save", "consents": {"essential": "true"}}},
        {"consent_data": {"type": "accept"}, "location_data": {"port": "443"}},
    ],
)
async def test_klaro_values_of_the_wrong_json_type_are_refused(
    client: TestClient, wrong: dict[str, Any]
) -> None:
    """A number or string where the schema says boolean or integer is 422, not coerced."""
    site_id = await make_integration_site(client, [purpose("essential", required=True)])
    r = await client.post(
        f"/v1/privacy-managers/{site_id}/submit", json=wrong, headers={"Origin": ORIGIN}
    )
    assert r.status == 422, await r.text()


async def test_klaro_config_uses_klaros_language_codes(client: TestClient) -> None:
    site_id = new_site_id()
    r = await client.put(
        f"/v1/sites/{site_id}",
        headers=ADMIN,
        json={
            "name": "Norsk",
            "origins": [ORIGIN],
            "languages": ["nb", "en"],
            "default_language": "nb",
        },
    )
    assert r.status == 201
    r = await client.post(f"/v1/sites/{site_id}/policies", headers=ADMIN, json=policy_body())
    assert r.status == 201
    config = await (await client.get(f"/v1/privacy-managers/{site_id}/config.json")).json()
    # Klaro 0.7 ships UI strings for "no" (not "nb") and falls back to "zz" unless told.
    assert config["lang"] == "no" and config["fallbackLang"] == "en"
    assert set(config["translations"]) == {"no", "en"}
    assert all(set(s["translations"]) == {"no", "en"} for s in config["services"])


def klaro_config_path(site_id: str) -> str:
    return f"/v1/privacy-managers/{site_id}/config.json"


async def test_klaro_config_has_an_etag_and_answers_304(client: TestClient) -> None:
    site_id = await make_integration_site(client, [purpose("essential", required=True)])
    r = await client.get(klaro_config_path(site_id), headers={"Origin": ORIGIN})
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    etag = r.headers["ETag"]
    assert (await r.json())["name"] == "default"
    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get(
            klaro_config_path(site_id), headers={"Origin": ORIGIN, "If-None-Match": sent}
        )
        assert again.status == 304, sent
        assert again.headers["ETag"] == etag and await again.read() == b""
    named = await client.get(klaro_config_path(site_id) + "?name=testing")
    assert named.status == 200 and named.headers["ETag"] != etag
    assert (await named.json())["name"] == "testing"


async def test_klaro_config_is_built_once_per_change_of_the_site_or_policy(
    client: TestClient,
) -> None:
    site_id = await make_integration_site(client, [purpose("essential", required=True)])
    path = klaro_config_path(site_id)
    before = KLARO_CONFIGS.builds
    bodies = {await (await client.get(path + f"?name=n{i % 3}")).read() for i in range(30)}
    assert KLARO_CONFIGS.builds == before + 1 and len(bodies) == 3
    old = await (await client.get(path)).json()

    policy = {"material": True, "policy_url": "https://example.com/privacy-2"}
    policy |= {"purposes": [purpose("essential", required=True)], "texts": {"en": TEXTS}}
    r = await client.post(f"/v1/sites/{site_id}/policies", headers=ADMIN, json=policy)
    assert r.status == 201, await r.text()
    for _ in range(5):
        new = await (await client.get(path)).json()
    assert old["privacyPolicy"] != new["privacyPolicy"] == "https://example.com/privacy-2"
    assert KLARO_CONFIGS.builds == before + 2

    site = {"name": "Captured", "origins": [ORIGIN], "languages": ["en"]}
    site |= {"default_language": "en", "consent_validity_days": 30}
    r = await client.put(f"/v1/sites/{site_id}", headers=ADMIN, json=site)
    assert r.status == 200, await r.text()
    assert (await (await client.get(path)).json())["cookieExpiresAfterDays"] == 30
    assert KLARO_CONFIGS.builds == before + 3


async def test_another_instance_serves_the_new_klaro_config_after_a_publish(
    aiohttp_client: Any, settings: Any, db_dsn: str, client: TestClient
) -> None:
    """Two apps on one database: the one that did not publish follows the catalogue's
    invalidation, and its cached config is not served past the change."""
    other: TestClient = await aiohttp_client(create_app(settings, db_dsn))
    site_id = await make_integration_site(client, [purpose("essential", required=True)])
    path = klaro_config_path(site_id)
    first = await other.get(path)
    etag = first.headers["ETag"]
    assert (await first.json())["privacyPolicy"] == "https://example.com/privacy"
    policy = {"material": True, "policy_url": "https://example.com/privacy-2"}
    policy |= {"purposes": [purpose("essential", required=True)], "texts": {"en": TEXTS}}
    r = await client.post(f"/v1/sites/{site_id}/policies", headers=ADMIN, json=policy)
    assert r.status == 201, await r.text()
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        r = await other.get(path, headers={"If-None-Match": etag})
        if r.status == 200 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    assert r.status == 200 and r.headers["ETag"] != etag
    assert (await r.json())["privacyPolicy"] == "https://example.com/privacy-2"


async def test_klaro_config_is_rate_limited_per_network(
    aiohttp_client: Any, settings: Any, db_dsn: str
) -> None:
    strict = settings.model_copy(update={"rate_per_second": 0.01, "rate_burst": 3})
    client = await aiohttp_client(create_app(strict, db_dsn))
    site_id = await make_integration_site(client, [purpose("essential", required=True)])
    statuses = []
    for _ in range(5):
        r = await client.get(klaro_config_path(site_id), headers={"Origin": ORIGIN})
        statuses.append(r.status)
    assert statuses == [200, 200, 200, 429, 429]
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert (await r.json())["status"] == 429


async def test_klaro_config_answers_per_rule_and_gpc_behind_a_trusted_proxy(
    aiohttp_client: Any, settings: Any, db_dsn: str
) -> None:
    from tests.api.test_jurisdictions import geo_client, rules_site

    client = await geo_client(aiohttp_client, settings, db_dsn, "127.0.0.0/8")
    site_id = await rules_site(client)  # eea opt_in, us-ca opt_out, the default notice_only
    path = klaro_config_path(site_id)

    async def config(**headers: str) -> tuple[dict[str, Any], Any]:
        r = await client.get(path, headers=headers)
        assert r.status == 200, await r.text()
        return await r.json(), r.headers

    def defaults(cfg: dict[str, Any]) -> dict[str, tuple[bool, bool]]:
        return {s["name"]: (s["default"], s["optOut"]) for s in cfg["services"]}

    norway, headers = await config(**{"CF-IPCountry": "NO"})
    assert norway["cmp"] == {"rule": "eea", "model": "opt_in"}
    assert defaults(norway)["google-analytics"] == defaults(norway)["facebook-pixel"] == (
        False, False
    )  # fmt: skip
    assert defaults(norway)["session"] == (True, False)
    assert headers["Cache-Control"] == "private, max-age=60"
    assert {"CF-IPCountry", "cf-region-code", "Sec-GPC"} <= set(headers["Vary"].split(", "))

    california, ca_headers = await config(**{"CF-IPCountry": "US", "cf-region-code": "CA"})
    assert california["cmp"] == {"rule": "us-ca", "model": "opt_out"}
    assert defaults(california)["google-analytics"] == (True, True)
    assert defaults(california)["facebook-pixel"] == (True, True)
    gpc, _ = await config(**{"CF-IPCountry": "US", "cf-region-code": "CA", "Sec-GPC": "1"})
    assert defaults(gpc)["google-analytics"] == (True, True)
    assert defaults(gpc)["facebook-pixel"] == (False, False)  # sale/sharing: GPC says no
    elsewhere, _ = await config(**{"CF-IPCountry": "JP"})
    assert elsewhere["cmp"]["model"] == "notice_only"
    assert defaults(elsewhere)["facebook-pixel"] == (True, True)
    unknown, _ = await config()
    assert unknown["cmp"]["rule"] == "eea"  # the fallback
    assert len({headers["ETag"], ca_headers["ETag"]}) == 2

    # Each rule's config is built once, and the one asked again answers 304.
    before = KLARO_CONFIGS.builds
    for _ in range(3):
        await config(**{"CF-IPCountry": "SE"})
    assert KLARO_CONFIGS.builds == before
    r = await client.get(path, headers={"CF-IPCountry": "DE", "If-None-Match": headers["ETag"]})
    assert r.status == 304
