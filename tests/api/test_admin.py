"""Admin API and the auth matrix (docs/api.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.factories import ADMIN, make_key, make_site, new_site_id, policy_body, site_body

NO_KEY: dict[str, str] = {}
BAD_KEY = {"Authorization": "Bearer cmp_live_0000000000000000_notakey"}


async def _call(
    client: TestClient, method: str, path: str, headers: dict[str, str], body: Any = None
) -> int:
    r = await client.request(method, path, json=body, headers=headers)
    await r.read()
    return r.status


@pytest.fixture
async def two_sites(client: TestClient) -> dict[str, Any]:
    a = await make_site(client)
    b = await make_site(client)
    return {
        "site": a,
        "admin": await make_key(client, a, "admin"),
        "read": await make_key(client, a, "read"),
        "other_admin": await make_key(client, b, "admin"),
    }


def _endpoints(site: str) -> list[tuple[str, str, Any, int]]:
    """(method, path, body, success status) of every admin endpoint."""
    return [
        ("PUT", f"/v1/sites/{site}", site_body(), 200),
        ("GET", f"/v1/sites/{site}", None, 200),
        ("POST", f"/v1/sites/{site}/policies", policy_body(material=False), 201),
        ("GET", f"/v1/sites/{site}/policies", None, 200),
        ("GET", f"/v1/sites/{site}/policies/current", None, 200),
        ("GET", f"/v1/sites/{site}/policies/1", None, 200),
        ("POST", f"/v1/sites/{site}/keys", {"scope": "read"}, 201),
        ("GET", f"/v1/sites/{site}/keys", None, 200),
    ]


async def test_admin_matrix_gives_401_401_2xx_2xx_403_404(
    client: TestClient, two_sites: dict[str, Any]
) -> None:
    site = two_sites["site"]
    callers = [
        ("no key", NO_KEY, None),
        ("bad key", BAD_KEY, 401),
        ("root", ADMIN, "ok"),
        ("same-site admin", two_sites["admin"], "ok"),
        ("same-site read", two_sites["read"], 403),
        ("other-site admin", two_sites["other_admin"], 404),
    ]
    for method, path, body, ok in _endpoints(site):
        for name, headers, expected in callers:
            status = await _call(client, method, path, headers, body)
            want = {None: 401, "ok": ok}.get(expected, expected)  # type: ignore[call-overload]
            assert status == want, f"{method} {path} as {name}: {status} != {want}"
    # Revocation is a key endpoint too: checked last, it revokes the key it is given.
    victim = (await (await client.get(f"/v1/sites/{site}/keys", headers=ADMIN)).json())["keys"][0]
    path = f"/v1/sites/{site}/keys/{victim['id']}"
    assert await _call(client, "DELETE", path, NO_KEY) == 401
    assert await _call(client, "DELETE", path, BAD_KEY) == 401
    assert await _call(client, "DELETE", path, two_sites["read"]) == 403
    assert await _call(client, "DELETE", path, two_sites["other_admin"]) == 404
    assert await _call(client, "DELETE", path, two_sites["admin"]) == 204


async def test_other_sites_key_cannot_tell_existing_from_missing_site(
    client: TestClient, two_sites: dict[str, Any]
) -> None:
    other = two_sites["other_admin"]
    assert await _call(client, "GET", f"/v1/sites/{two_sites['site']}", other) == 404
    assert await _call(client, "GET", f"/v1/sites/{new_site_id()}", other) == 404


async def test_put_site_creates_then_updates(client: TestClient) -> None:
    site_id = new_site_id()
    r = await client.put(f"/v1/sites/{site_id}", json=site_body(), headers=ADMIN)
    assert r.status == 201
    created = await r.json()
    assert created["site_id"] == site_id and created["languages"] == ["nb", "en"]
    assert "subject_key" not in created
    r = await client.put(
        f"/v1/sites/{site_id}", json=site_body(consent_validity_days=30), headers=ADMIN
    )
    assert r.status == 200
    assert (await r.json())["consent_validity_days"] == 30


async def test_policy_versions_are_numbered_and_hashed(client: TestClient) -> None:
    site_id = await make_site(client, policy=False)
    r = await client.post(f"/v1/sites/{site_id}/policies", json=policy_body(), headers=ADMIN)
    first = await r.json()
    assert r.status == 201 and first["version"] == 1 and first["material"] is True
    assert len(first["content_sha256"]) == 64
    r = await client.post(
        f"/v1/sites/{site_id}/policies", json=policy_body(material=False), headers=ADMIN
    )
    second = await r.json()
    assert second["version"] == 2 and second["material"] is False
    assert second["content_sha256"] == first["content_sha256"]  # same visible content
    r = await client.get(f"/v1/sites/{site_id}/policies/current", headers=ADMIN)
    assert (await r.json())["version"] == 2
    r = await client.get(f"/v1/sites/{site_id}/policies", headers=ADMIN)
    assert [p["version"] for p in (await r.json())["policies"]] == [1, 2]
    r = await client.get(f"/v1/sites/{site_id}/policies/9", headers=ADMIN)
    assert r.status == 404


async def test_first_policy_version_must_be_material(client: TestClient) -> None:
    site_id = await make_site(client, policy=False)
    r = await client.post(
        f"/v1/sites/{site_id}/policies", json=policy_body(material=False), headers=ADMIN
    )
    assert r.status == 422
    assert (await r.json())["errors"][0]["pointer"] == "/material"


async def test_policy_must_cover_every_site_language(client: TestClient) -> None:
    site_id = await make_site(client, policy=False, languages=("nb", "sv", "en"))
    r = await client.post(f"/v1/sites/{site_id}/policies", json=policy_body(), headers=ADMIN)
    assert r.status == 422
    pointers = {e["pointer"] for e in (await r.json())["errors"]}
    assert "/texts/sv" in pointers and "/purposes/0/title/sv" in pointers


async def test_key_is_shown_once_and_listed_without_secret(client: TestClient) -> None:
    site_id = await make_site(client)
    r = await client.post(f"/v1/sites/{site_id}/keys", json={"scope": "audit"}, headers=ADMIN)
    created = await r.json()
    prefix = f"cmp_live_{created['id']}_"
    assert created["key"].startswith(prefix)
    assert len(created["key"][len(prefix) :]) >= 22  # base64url: >= 128 random bits
    listed = await (await client.get(f"/v1/sites/{site_id}/keys", headers=ADMIN)).json()
    assert listed["keys"][0]["id"] == created["id"]
    assert all("key" not in k and "secret_hash" not in k for k in listed["keys"])


async def test_revoked_key_is_refused_at_once(client: TestClient) -> None:
    site_id = await make_site(client)
    r = await client.post(f"/v1/sites/{site_id}/keys", json={"scope": "admin"}, headers=ADMIN)
    created = await r.json()
    own = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get(f"/v1/sites/{site_id}", headers=own)).status == 200
    r = await client.delete(f"/v1/sites/{site_id}/keys/{created['id']}", headers=ADMIN)
    assert r.status == 204
    assert (await client.get(f"/v1/sites/{site_id}", headers=own)).status == 401


async def test_invalid_site_id_is_404(client: TestClient) -> None:
    r = await client.get("/v1/sites/Bad_Id", headers=ADMIN)
    assert r.status == 404


async def test_key_use_is_recorded_in_batches(
    aiohttp_client: Any, settings: Any, db_dsn: str
) -> None:
    from cmp.app import create_app

    fast = settings.model_copy(update={"checkpoint_interval_seconds": 1})
    client = await aiohttp_client(create_app(fast, db_dsn))
    site_id = await make_site(client)
    read = await make_key(client, site_id, "read")
    listed = await (await client.get(f"/v1/sites/{site_id}/keys", headers=ADMIN)).json()
    assert listed["keys"][0]["last_used_at"] is None
    r = await client.get(f"/v1/sites/{site_id}/subjects/x/consent", headers=read)
    assert r.status == 200
    for _ in range(40):
        await asyncio.sleep(0.1)
        listed = await (await client.get(f"/v1/sites/{site_id}/keys", headers=ADMIN)).json()
        if listed["keys"][0]["last_used_at"] is not None:
            break
    assert listed["keys"][0]["last_used_at"] is not None
