"""What one admin key can make a site cost: a cap on active keys, paginated listings of
keys and policies, and a bounded key cache (issue 19)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cmp import catalog
from cmp.appkeys import CATALOG
from cmp.store.keys import MAX_ACTIVE_KEYS
from tests.factories import ADMIN, make_site, policy_body


async def _create_keys(client: TestClient, site_id: str, n: int) -> list[dict[str, Any]]:
    async def one() -> dict[str, Any]:
        r = await client.post(f"/v1/sites/{site_id}/keys", json={"scope": "read"}, headers=ADMIN)
        assert r.status == 201, await r.text()
        return await r.json()  # type: ignore[no-any-return]

    made: list[dict[str, Any]] = []
    for start in range(0, n, 20):  # concurrent, as a script would: the cap must still hold
        made += await asyncio.gather(*(one() for _ in range(min(20, n - start))))
    return made


async def _walk(client: TestClient, path: str, name: str) -> tuple[list[Any], int]:
    """Every item of a listing by following `next`; (items, pages)."""
    items: list[Any] = []
    pages = 0
    url: str | None = path
    while url is not None:
        r = await client.get(url, headers=ADMIN)
        assert r.status == 200, await r.text()
        body = await r.json()
        items += body[name]
        pages += 1
        url = body["next"]
    return items, pages


async def test_active_keys_are_capped_and_a_revoked_one_frees_a_place(
    client: TestClient,
) -> None:
    site_id = await make_site(client, policy=False)
    made = await _create_keys(client, site_id, MAX_ACTIVE_KEYS)
    r = await client.post(f"/v1/sites/{site_id}/keys", json={"scope": "read"}, headers=ADMIN)
    assert r.status == 422
    problem = await r.json()
    assert str(MAX_ACTIVE_KEYS) in problem["errors"][0]["detail"]
    assert "revoke" in problem["errors"][0]["detail"]
    r = await client.delete(f"/v1/sites/{site_id}/keys/{made[0]['id']}", headers=ADMIN)
    assert r.status == 204
    r = await client.post(f"/v1/sites/{site_id}/keys", json={"scope": "audit"}, headers=ADMIN)
    assert r.status == 201
    r = await client.post(f"/v1/sites/{site_id}/keys", json={"scope": "audit"}, headers=ADMIN)
    assert r.status == 422


async def test_key_listing_pages_walk_every_key_exactly_once(client: TestClient) -> None:
    site_id = await make_site(client, policy=False)
    made = await _create_keys(client, site_id, 25)
    first = await (await client.get(f"/v1/sites/{site_id}/keys", headers=ADMIN)).json()
    assert len(first["keys"]) == 25 and first["next"] is None  # under the default page
    listed, pages = await _walk(client, f"/v1/sites/{site_id}/keys?limit=7", "keys")
    assert pages == 4
    assert [k["id"] for k in listed] == [k["id"] for k in first["keys"]]
    assert sorted(k["id"] for k in listed) == sorted(k["id"] for k in made)


async def test_policy_listing_pages_walk_every_version_exactly_once(client: TestClient) -> None:
    site_id = await make_site(client)
    for _ in range(4):
        r = await client.post(
            f"/v1/sites/{site_id}/policies", json=policy_body(material=False), headers=ADMIN
        )
        assert r.status == 201
    listed, pages = await _walk(client, f"/v1/sites/{site_id}/policies?limit=2", "policies")
    assert [p["version"] for p in listed] == [1, 2, 3, 4, 5]
    assert pages == 3


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=abc", "limit=100000", "after=ABC", "limit=1&limit=2"]
)
async def test_bad_page_parameters_are_422(client: TestClient, query: str) -> None:
    site_id = await make_site(client)
    for what in ("keys", "policies"):
        r = await client.get(f"/v1/sites/{site_id}/{what}?{query}", headers=ADMIN)
        assert r.status == 422, (what, query, await r.text())


async def test_key_cache_stays_bounded_and_revocation_is_immediate(
    aiohttp_client: Any, settings: Any, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cmp.app import create_app

    monkeypatch.setattr(catalog, "KEY_CACHE_MAX", 5)
    app = create_app(settings, db_dsn)
    client = await aiohttp_client(app)
    site_id = await make_site(client)
    made = await _create_keys(client, site_id, 30)
    for key in made:
        headers = {"Authorization": f"Bearer {key['key']}"}
        r = await client.get(f"/v1/sites/{site_id}/subjects/x/consent", headers=headers)
        assert r.status == 200
        assert app[CATALOG].cached_keys <= 5
    # The last key is cached; an evicted one still works (read again); both revoke at once.
    for key in (made[-1], made[0]):
        headers = {"Authorization": f"Bearer {key['key']}"}
        path = f"/v1/sites/{site_id}/subjects/x/consent"
        assert (await client.get(path, headers=headers)).status == 200
        r = await client.delete(f"/v1/sites/{site_id}/keys/{key['id']}", headers=ADMIN)
        assert r.status == 204
        assert (await client.get(path, headers=headers)).status == 401
