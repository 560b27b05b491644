"""`GET /v1/sites/{id}/banner.js` over HTTP (no browser): headers, caching, size budget,
the embedded configuration and its escaping, errors, and the demo route's gate."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from typing import Any

from aiohttp.test_utils import TestClient

from cmp.api.banner import script_json, template
from tests.e2e.policy import e2e_policy
from tests.factories import ADMIN, make_site

BUDGET = 15 * 1024
CONFIG = re.compile(r"var C = (\{.*?\});\n")


def config_of(body: str) -> dict[str, Any]:
    found = CONFIG.search(body)
    assert found, "no configuration in banner.js"
    return json.loads(found.group(1))  # type: ignore[no-any-return]


async def e2e_site(client: TestClient, **site: Any) -> str:
    site_id = await make_site(client, policy=False, languages=("nb", "sv", "en"), **site)
    r = await client.post(f"/v1/sites/{site_id}/policies", json=e2e_policy(), headers=ADMIN)
    assert r.status == 201, await r.text()
    return site_id


async def test_banner_js_is_public_cacheable_and_answers_304(client: TestClient) -> None:
    site_id = await make_site(client)
    r = await client.get(f"/v1/sites/{site_id}/banner.js", headers={"Accept-Encoding": "identity"})
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert r.headers["Cache-Control"] == "public, max-age=300"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    body = await r.read()
    etag = r.headers["ETag"]
    assert etag == f'"{hashlib.sha256(body).hexdigest()[:32]}"'

    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get(
            f"/v1/sites/{site_id}/banner.js",
            headers={"If-None-Match": sent, "Accept-Encoding": "identity"},
        )
        assert again.status == 304, sent
        assert again.headers["ETag"] == etag and await again.read() == b""
    other = await client.get(f"/v1/sites/{site_id}/banner.js", headers={"If-None-Match": '"x"'})
    assert other.status == 200


async def test_banner_js_is_within_15_kb_gzipped_and_served_gzipped(client: TestClient) -> None:
    site_id = await e2e_site(client)
    r = await client.get(f"/v1/sites/{site_id}/banner.js", headers={"Accept-Encoding": "gzip"})
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers["Vary"] == "Accept-Encoding"
    assert int(r.headers["Content-Length"]) <= BUDGET
    body = await r.read()  # decompressed by the client
    assert len(gzip.compress(body, 9)) <= BUDGET
    assert len(gzip.compress(template().encode(), 9)) <= BUDGET
    gz_etag = r.headers["ETag"]
    assert gz_etag.endswith('-gzip"')
    again = await client.get(
        f"/v1/sites/{site_id}/banner.js",
        headers={"Accept-Encoding": "gzip", "If-None-Match": gz_etag},
    )
    assert again.status == 304


async def test_the_configuration_comes_from_the_catalog_without_policy_text(
    client: TestClient,
) -> None:
    site_id = await e2e_site(client, consent_validity_days=180)
    body = await (await client.get(f"/v1/sites/{site_id}/banner.js")).text()
    config = config_of(body)
    assert config["site_id"] == site_id
    assert config["languages"] == ["nb", "sv", "en"] and config["default_language"] == "nb"
    assert config["consent_validity_days"] == 180
    assert config["policy_version"] == 1 and config["material_version"] == 1
    assert config["policy_url"] == "https://shop.example/personvern"
    assert [p["key"] for p in config["purposes"]] == [
        "necessary",
        "preferences",
        "statistics",
        "marketing",
    ]
    stats = config["purposes"][2]
    assert stats["consent_mode"] == ["analytics_storage"] and stats["title"]["sv"] == "Statistik"
    assert stats["services"] == [
        {
            "key": "google-analytics",
            "name": "Google Analytics",
            "cookies": ["_ga", "_ga_*"],
            "retention_days": 730,
            "description": e2e_policy()["purposes"][2]["services"][0]["description"],
        }
    ]
    assert config["purposes"][3]["gpc"] is True
    assert set(config["texts"]) == {"nb", "sv", "en"}
    assert all("policy_text" not in t for t in config["texts"].values())
    assert "alert(1)" not in body  # the policy text (with a <script> in it) stays out

    r = await client.post(
        f"/v1/sites/{site_id}/policies", json=e2e_policy(material=False), headers=ADMIN
    )
    assert r.status == 201
    config = config_of(await (await client.get(f"/v1/sites/{site_id}/banner.js")).text())
    assert config["policy_version"] == 2 and config["material_version"] == 1


async def test_text_is_escaped_for_a_script_context(client: TestClient) -> None:
    site_id = await make_site(client, policy=False, languages=("nb",))
    policy = e2e_policy()
    policy["texts"] = {
        "nb": {**policy["texts"]["nb"], "title": "</script><script>alert(1)</script>\u2028<!--"}
    }
    for purpose in policy["purposes"]:
        purpose["title"] = {"nb": purpose["title"]["nb"]}
    r = await client.post(f"/v1/sites/{site_id}/policies", json=policy, headers=ADMIN)
    assert r.status == 201, await r.text()
    body = await (await client.get(f"/v1/sites/{site_id}/banner.js")).text()
    assert "</script" not in body and "<!--" not in body and "\u2028" not in body
    assert config_of(body)["texts"]["nb"]["title"].startswith("</script><script>")
    assert script_json({"a": "</x>\u2029"}) == '{"a":"\\u003c/x>\\u2029"}'


async def test_unknown_site_or_site_without_policy_is_a_404_problem(client: TestClient) -> None:
    for path in (
        "/v1/sites/t-nope0000/banner.js",
        "/v1/sites/UPPER/banner.js",
        f"/v1/sites/{await make_site(client, policy=False)}/banner.js",
    ):
        r = await client.get(path)
        assert r.status == 404, path
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert (await r.json())["status"] == 404


async def test_the_demo_page_exists_only_in_demo_mode_and_both_routes_are_documented(
    client: TestClient,
) -> None:
    site_id = await make_site(client)
    r = await client.get(f"/demo/{site_id}")
    assert r.status == 404
    doc = await (await client.get("/openapi.json")).json()
    op = doc["paths"]["/v1/sites/{site_id}/banner.js"]["get"]
    assert op["tags"] == ["banner"] and "security" not in op
    assert "/demo/{site_id}" in doc["paths"]
