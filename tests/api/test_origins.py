"""A site's origins in the one form browsers send (issue 19): normalised when stored,
echoed so, and compared with the request's Origin in the same form."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cmp import sitefile
from cmp.appkeys import CATALOG
from tests.factories import ADMIN, event, new_site_id, policy_body, site_body

GIVEN = [
    "https://Shop.Example:443",
    "HTTPS://Bücher.example/",
    "http://LOCALHOST:80",
    "http://[::1]:8080",
]
NORMAL = [
    "https://shop.example",
    "https://xn--bcher-kva.example",
    "http://localhost",
    "http://[::1]:8080",
]


async def _site(client: TestClient, origins: list[str]) -> str:
    site_id = new_site_id()
    r = await client.put(f"/v1/sites/{site_id}", json=site_body(origins=origins), headers=ADMIN)
    assert r.status == 201, await r.text()
    r = await client.post(f"/v1/sites/{site_id}/policies", json=policy_body(), headers=ADMIN)
    assert r.status == 201, await r.text()
    return site_id


async def test_origins_are_stored_and_shown_in_normal_form(client: TestClient) -> None:
    site_id = new_site_id()
    r = await client.put(f"/v1/sites/{site_id}", json=site_body(origins=GIVEN), headers=ADMIN)
    assert r.status == 201, await r.text()
    assert (await r.json())["origins"] == NORMAL
    r = await client.get(f"/v1/sites/{site_id}", headers=ADMIN)
    assert (await r.json())["origins"] == NORMAL


@pytest.mark.parametrize(
    "origin",
    [
        "ftp://shop.example",
        "https://shop.example/shop",
        "https://shop.example?x=1",
        "https://shop.example#top",
        "https://user@shop.example",
        "https://shop..example",
        "https://shop.example:0",
        "https://shop.example:70000",
        "null",
    ],
)
async def test_what_is_not_an_origin_is_422(client: TestClient, origin: str) -> None:
    site_id = new_site_id()
    body = site_body(origins=["https://ok.example", origin])
    r = await client.put(f"/v1/sites/{site_id}", json=body, headers=ADMIN)
    assert r.status == 422, await r.text()
    assert any(e["pointer"] == "/origins/1" for e in (await r.json())["errors"])


async def test_two_spellings_of_one_origin_repeat_it(client: TestClient) -> None:
    body = site_body(origins=["https://shop.example", "https://SHOP.example:443/"])
    r = await client.put(f"/v1/sites/{new_site_id()}", json=body, headers=ADMIN)
    assert r.status == 422


async def test_the_browsers_origin_is_allowed_whatever_the_spelling_stored(
    client: TestClient,
) -> None:
    site_id = await _site(client, GIVEN)
    for origin in ("https://shop.example", "https://xn--bcher-kva.example", "http://localhost"):
        r = await client.post(
            f"/v1/sites/{site_id}/events", json=event(), headers={"Origin": origin}
        )
        assert r.status == 201, (origin, await r.text())
        assert r.headers["Access-Control-Allow-Origin"] == origin
    r = await client.post(
        f"/v1/sites/{site_id}/events", json=event(), headers={"Origin": "https://evil.example"}
    )
    assert r.status == 403


async def test_preflight_echoes_the_request_origin(client: TestClient) -> None:
    site_id = await _site(client, ["https://Shop.Example:443/"])
    r = await client.options(
        f"/v1/sites/{site_id}/events",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example"


async def test_a_row_stored_before_normalising_matches_the_browser(
    client: TestClient, db: asyncpg.Connection
) -> None:
    site_id = await _site(client, ["https://shop.example"])
    # As an older version stored it: byte for byte what the admin wrote.
    await db.execute(
        "UPDATE sites SET origins = '{https://Shop.Example:443}' WHERE site_id = $1", site_id
    )
    client.app[CATALOG].invalidate(f"site:{site_id}")  # what the change's NOTIFY does
    r = await client.post(
        f"/v1/sites/{site_id}/events", json=event(), headers={"Origin": "https://shop.example"}
    )
    assert r.status == 201, await r.text()


def test_a_site_file_goes_through_the_same_rule(tmp_path: Path) -> None:
    path = tmp_path / "shop.toml"
    path.write_text(
        'site_id = "shop"\n[site]\nname = "Shop"\nlanguages = ["nb"]\n'
        'default_language = "nb"\norigins = ["https://Shop.Example:443", "https://Bücher.example/"]\n',
        "utf-8",
    )
    assert sitefile.load(path).site.origins == [
        "https://shop.example",
        "https://xn--bcher-kva.example",
    ]
    path.write_text(path.read_text("utf-8").replace("example/", "example/path"), "utf-8")
    with pytest.raises(sitefile.SiteFileError, match="origins"):
        sitefile.load(path)
